# Evaluate the official ImageNet-1K VMamba-B[s2l15] weights (expected top-1 83.88):
#   python tools/test.py configs/vmamba_b_in1k_official-eval.py
# tools/test.py reads the official file safely (its 'model' weights) and maps
# classifier.norm -> backbone.outnorm3 and classifier.head -> head.fc. Give a
# local copy as the second argument of tools/test.py to skip the download.
_base_ = ['./vmamba_b_in1k.py']

load_from = {{_base_.vmamba_weights.base}}

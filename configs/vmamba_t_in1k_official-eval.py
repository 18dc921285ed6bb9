# Evaluate the official ImageNet-1K VMamba-T[s1l8] weights (expected top-1 82.6):
#   python tools/test.py configs/vmamba_t_in1k_official-eval.py
# tools/test.py reads the official file safely (its 'model' weights) and maps
# classifier.norm -> backbone.outnorm3 and classifier.head -> head.fc. Give a
# local copy as the second argument of tools/test.py to skip the download.
_base_ = ['./vmamba_t_in1k.py']

load_from = {{_base_.vmamba_weights.tiny}}

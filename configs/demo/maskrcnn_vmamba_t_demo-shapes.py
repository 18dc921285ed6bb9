# The main-job demo: Mask R-CNN with a VMamba-T backbone trained from scratch
# on the built-in "demo shapes" set (generated on first use, no download).
# About 3-10 minutes on a 2-core CPU (`make demo`), a minute or two on one
# GPU; it evaluates COCO box/mask mAP on 20 validation images (low after the
# first epoch, clearly higher at the end) and draws predictions on them
# (<work_dir>/<timestamp>/vis_data/vis_image during training).
_base_ = ['../maskrcnn_vmamba_t_coco.py']

data_root = 'data/vmamba_demo/'
# small images with large shapes: one step (batch 2) is about a second on two
# CPU cores, and the stride-4..64 FPN anchors (32-512 px) fit the shapes
img_size = 160
classes = ('circle', 'square', 'triangle')
# tools/train.py and tools/test.py generate the set from these arguments
demo_data = dict(
    root=data_root, num_train=60, num_val=20, img_size=img_size, seed=0)

# Mask R-CNN with 128 instead of 256 FPN/head channels: at 160 px the
# mask head's convolutions on the sampled RoIs, not the backbone, would
# dominate a CPU step; 128 channels are plenty for three shape classes.
neck_channels = 128
model = dict(
    # from scratch (no download); no stochastic depth in so short a run
    backbone=dict(init_cfg=None, drop_path_rate=0.),
    neck=dict(out_channels=neck_channels),
    rpn_head=dict(in_channels=neck_channels, feat_channels=neck_channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=neck_channels),
        bbox_head=dict(in_channels=neck_channels, num_classes=len(classes)),
        mask_roi_extractor=dict(out_channels=neck_channels),
        mask_head=dict(
            in_channels=neck_channels,
            conv_out_channels=neck_channels,
            num_classes=len(classes))),
    # lighter than COCO's: 1-3 objects per image, so 64 sampled RoIs (at
    # most 16 positives, the mask head's inputs) per image suffice
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(
        rpn=dict(nms_pre=300, max_per_img=100), rcnn=dict(max_per_img=10)))

metainfo = dict(
    classes=classes, palette=[(220, 40, 40), (40, 200, 60), (40, 80, 230)])
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=2,
    num_workers=1,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=8),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# 30 steps per epoch (60 images, batch 2), 240 in all; COCO mAP after
# epochs 1 (still in the lr warm-up), 2, 4, 6 and 8
max_epochs = 8
train_cfg = dict(
    max_epochs=max_epochs, val_interval=1, dynamic_intervals=[(4, 2)])
# AdamW (base recipe: weight decay 0.05, none on norms) at a higher lr than
# COCO's 1e-4: a from-scratch model, and few steps to learn in. fused: one
# pass over each parameter instead of a dozen tensor ops (CPU and CUDA; Xeon
# with AVX-512, one thread: the optimizer step 188 -> 88-97 ms of a ~1 s step)
optim_wrapper = dict(
    optimizer=dict(lr=5e-4, fused=True), clip_grad=dict(max_norm=10.))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(
        type='CosineAnnealingLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        eta_min_ratio=0.05,
        convert_to_iter_based=True)
]
default_hooks = dict(
    # a progress line (iteration, eta, losses) every 5 steps
    logger=dict(interval=5),
    # only the last checkpoint (a save is ~0.5 GB with the optimizer state)
    checkpoint=dict(interval=max_epochs),
    # draw every 5th validation image with its predictions
    visualization=dict(draw=True, interval=5, score_thr=0.3))
find_unused_parameters = True  # DDP: unused RPN/RoI branches on some steps
auto_scale_lr = dict(enable=False, base_batch_size=2)

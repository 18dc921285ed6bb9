# The main-job demo: Mask R-CNN with a VMamba-T backbone trained from scratch
# on the built-in "demo shapes" set (generated on first use, no download).
# A few minutes on a 2-core CPU; evaluates COCO box/mask mAP every epoch and
# writes pictures of the predictions (vis_data/vis_image in the work_dir).
_base_ = ['../maskrcnn_vmamba_t_coco.py']

data_root = 'data/vmamba_demo/'
img_size = 256
classes = ('circle', 'square', 'triangle')
# tools/train.py and tools/test.py generate the set from these arguments
demo_data = dict(
    root=data_root, num_train=160, num_val=40, img_size=img_size, seed=0)

model = dict(
    backbone=dict(init_cfg=None),  # from scratch: no download
    roi_head=dict(
        bbox_head=dict(num_classes=len(classes)),
        mask_head=dict(num_classes=len(classes))),
    # a lighter head schedule than COCO's: few objects per image
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(
        rpn=dict(nms_pre=300, max_per_img=100),
        rcnn=dict(max_per_img=20)))

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
    batch_size=4,
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

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs, val_interval=3)
optim_wrapper = dict(optimizer=dict(lr=4e-4), clip_grad=dict(max_norm=10.))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=40),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[10],
        gamma=0.1)
]
default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(interval=3, max_keep_ckpts=2),
    # draw every 5th validation image with its predictions
    visualization=dict(draw=True, interval=5, score_thr=0.3))
find_unused_parameters = True  # DDP: unused RPN/RoI branches on some steps
auto_scale_lr = dict(enable=False, base_batch_size=4)

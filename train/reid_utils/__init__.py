"""Event-ReId v2 preprocessing, the reference's two commands:

    python -m train.reid_utils.event_partition --input_dir ./Event_ReId_v2/
    python -m train.reid_utils.split_train_test --data_dir ./output/Event_ReId_v2/
"""

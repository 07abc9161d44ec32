"""Label sources: where a parcel's shipping label and tracking number come from.

Each source implements `logistics.labels.base.LabelSource`; `label_source_for(shipment)`
(in `sources`) picks the one a parcel uses, and `logistics.labels.store` buys and stores labels
(one parcel, or many in parallel). See base.py for the contract every source keeps.
"""

"""Label sources: where a parcel's shipping label and tracking number come from.

Each source implements `logistics.labels.base.LabelSource`; `label_source_for(shipment)` picks
the one a parcel uses. See base.py for the contract every source keeps.
"""

"""The pyqtgraph live viewer of the anonymized stream."""

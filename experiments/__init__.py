"""The studies behind the product (not installed): the privacy report, the controls, the
synthetic benchmark's learnability check; their configs and reports. See README.md here."""

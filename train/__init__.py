"""The paper's training stages with the reference's command-line flags, and the privacy report."""

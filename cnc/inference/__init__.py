"""From a trained run to anomaly maps: the test maps evaluation reads, and `cnc predict`
for new images."""

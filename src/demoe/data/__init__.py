"""Datasets: benchmark sources, the AIO-Blur mix, synthetic blur, training datasets."""

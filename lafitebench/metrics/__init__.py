"""Metrics: Inception-based (IS, FID, FID-k, KID), CLIP score and SOA-C/SOA-I."""

"""Certification: counts from noise (torch) and certificates from counts (torch-free).

bounds (Clopper-Pearson bounds, radii, the alpha split, Certificate), noise (seeded noise
streams), smoothing (Smooth: counts, CERTIFY, PREDICT), sequential (looks and their stopping
rule), checks (what every row check shares), routed (Dual RS), set_certificate, tree, cascade.
"""

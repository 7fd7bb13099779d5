"""Training: the shared epoch loop with checkpoints (fit), losses (loss), experts (expert),
routers (router) and denoisers (denoiser)."""

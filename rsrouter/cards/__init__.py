"""Cards: the data of expert, router and denoised-expert folders, read and checked without
building anything (refs, pins, header, expert, router, denoiser)."""

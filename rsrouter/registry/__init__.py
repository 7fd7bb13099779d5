"""Registry: registered names and the one load path of every expert, resolve -> fetch -> check
-> build (core), with plain, shared-weight and denoised experts as kinds plugged in at build."""

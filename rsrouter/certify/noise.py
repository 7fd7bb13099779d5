"""Noise streams: every noise draw comes from a generator whose whole state is derived from
``(seed, index, stage)`` (:func:`noise_generator`) and is drawn in fixed blocks of
``NOISE_BLOCK`` samples (:class:`NoiseStream`), so a certificate does not depend on the batch
size or on which other inputs share a batch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

NOISE_BLOCK = 128
STAGES = {
    "select": 0,
    "estimate": 1,
    "predict": 2,
    "router-select": 3,
    "router-estimate": 4,
    "router-predict": 5,
    "label": 6,
    "train": 7,
    "router-train": 8,
    "assign": 9,
}

_MT_WORDS = 624  # mt19937 state words (torch's CPU generator)
_MT_OFFSET = 24  # byte offset of the state words in torch's CPU generator state
_CPU_TEMPLATE: torch.Tensor | None = None


def stream_entropy(seed: int, index: int, stage: str) -> list[int]:
    """The fixed-width 32-bit words a stream's state is derived from (an injective encoding)."""
    if stage not in STAGES:
        raise ValueError(f"unknown noise stage {stage!r}; known: {sorted(STAGES)}")
    if int(index) < 0:
        raise ValueError(f"input index must be >= 0, got {index}")
    s, i = int(seed) & 0xFFFFFFFFFFFFFFFF, int(index) & 0xFFFFFFFFFFFFFFFF
    return [s & 0xFFFFFFFF, s >> 32, i & 0xFFFFFFFF, i >> 32, STAGES[stage]]


def stream_state(seed: int, index: int, stage: str, words: int = _MT_WORDS) -> np.ndarray:
    """``words`` 32-bit state words of the stream ``(seed, index, stage)`` (numpy SeedSequence)."""
    return np.random.SeedSequence(stream_entropy(seed, index, stage)).generate_state(words,
                                                                                     np.uint32)


def _cpu_template() -> torch.Tensor:
    """A seeded CPU generator's state bytes, with its layout checked once."""
    global _CPU_TEMPLATE
    if _CPU_TEMPLATE is None:
        state = torch.Generator().manual_seed(1).get_state()
        words = np.frombuffer(state.numpy().tobytes(), "<u8", _MT_WORDS, _MT_OFFSET)
        if state.numel() < _MT_OFFSET + 8 * _MT_WORDS or words[0] != 1 or words.max() >= 2**32:
            raise RuntimeError("this torch's CPU generator state has an unknown layout; rsrouter "
                               "cannot seed its noise streams (please report the torch version)")
        _CPU_TEMPLATE = state
    return _CPU_TEMPLATE


def noise_generator(seed: int, index: int, stage: str,
                    device: str | torch.device = "cpu") -> torch.Generator:
    """The generator of stream ``(seed, index, stage)``.

    On the CPU the whole mt19937 state (624 words) is filled from a SeedSequence of the triple,
    so distinct triples share a state only if SeedSequence's 128-bit pool collides (probability
    below ``N**2 / 2**129`` for ``N`` streams); seeding through ``manual_seed`` would keep only 32
    bits. On CUDA, Philox takes a 63-bit seed derived the same way (below ``N**2 / 2**64``).
    """
    device = torch.device(device)
    gen = torch.Generator(device=device)
    if device.type != "cpu":
        hi, lo = (int(w) for w in stream_state(seed, index, stage, 2))
        gen.manual_seed((hi << 32 | lo) & 0x7FFFFFFFFFFFFFFF)
        return gen
    state = _cpu_template().clone()
    raw = state.numpy()
    raw[8:16] = np.frombuffer(np.array([1, 1], "<i4").tobytes(), np.uint8)  # left=1, seeded=1
    raw[16:24] = 0  # next
    raw[_MT_OFFSET:_MT_OFFSET + 8 * _MT_WORDS] = np.frombuffer(
        stream_state(seed, index, stage).astype("<u8").tobytes(), np.uint8)
    gen.set_state(state)
    return gen


class NoiseStream:
    """Standard normal noise for one (seed, index, stage), drawn in fixed blocks.

    Drawing the same block size each time makes the stream independent of how it is consumed:
    ``take(3); take(5)`` returns the same values as ``take(8)``. Memory: one block.
    """

    def __init__(self, shape: Sequence[int], generator: torch.Generator) -> None:
        self.shape = tuple(shape)
        self.device = generator.device
        self.generator = generator
        self._block: torch.Tensor | None = None
        self._pos = NOISE_BLOCK

    def fill(self, out: torch.Tensor) -> None:
        """Write the next ``len(out)`` noise samples into ``out`` (whole blocks in place)."""
        pos, k = 0, len(out)
        while pos < k:
            if self._pos == NOISE_BLOCK and k - pos >= NOISE_BLOCK:
                dest = out[pos : pos + NOISE_BLOCK]
                torch.randn(dest.shape, generator=self.generator, out=dest)
                pos += NOISE_BLOCK
                continue
            if self._pos == NOISE_BLOCK:
                self._block = torch.randn(
                    (NOISE_BLOCK, *self.shape), generator=self.generator, device=self.device
                )
                self._pos = 0
            m = min(k - pos, NOISE_BLOCK - self._pos)
            out[pos : pos + m].copy_(self._block[self._pos : self._pos + m])
            self._pos += m
            pos += m

"""Image parameterisations: the variables an optimiser updates, and the image they make.

Each parameterisation maps its parameters to RGB images (N, 3, H, W) in [0, 1] and has the
exact adjoint of that map (`backward`), so the whole chain parameterisation -> transforms ->
model -> objective is one exact gradient.

- `PixelImage`: one variable per pixel and channel.
- `FFTImage`: a spectrum scaled by 1/f^decay_power (Olah et al. 2017, "Feature Visualization"):
  gradient steps change all frequencies at a similar rate, which removes the high-frequency
  noise pixel parameterisations accumulate.
- `MacoImage`: phase only, with a fixed magnitude spectrum estimated from real images (Fel et
  al. 2023, MACO).
Both spectral kinds are followed by colour decorrelation (the square root of the ImageNet colour
correlation, lucid's matrix) and a sigmoid into [0, 1]; a pixel image can use either too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft

from ..errors import ConfigurationError

# The square root of the ImageNet colour correlation matrix (lucid's `color_correlation_svd_sqrt`:
# an SVD of the 3x3 RGB covariance of ImageNet pixels), scaled so its largest column has norm 1.
_COLOR_SQRT = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float64
)
COLOR_DECORRELATION = (_COLOR_SQRT / np.max(np.linalg.norm(_COLOR_SQRT, axis=0))).astype(np.float32)


def _mix_channels(m: np.ndarray, t: np.ndarray) -> np.ndarray:
    """out[:, i] = sum_j m[i, j] t[:, j] for (N, C, H, W) t: one batched matmul (einsum's
    optimised path took 16 ms per call here, this takes well under 1 ms)."""
    n, c, h, w = t.shape
    return np.matmul(m, t.reshape(n, c, h * w)).reshape(n, c, h, w)


class ToRGB:
    """The last two steps shared by every parameterisation: colour decorrelation (3 channels)
    and a sigmoid into [0, 1] (or a clip, without a gradient outside [0, 1])."""

    def __init__(self, channels: int, decorrelate: bool, sigmoid: bool) -> None:
        if decorrelate and channels != 3:
            raise ConfigurationError(
                f"colour decorrelation is for 3-channel images; this one has {channels}: pass "
                "decorrelate=False."
            )
        self.decorrelate = decorrelate
        self.sigmoid = sigmoid
        self._out: np.ndarray | None = None
        self._pre: np.ndarray | None = None

    def forward(self, t: np.ndarray) -> np.ndarray:
        if self.decorrelate:
            t = _mix_channels(COLOR_DECORRELATION, t)
        if self.sigmoid:  # in place where t is ours: this runs every step
            out = t if self.decorrelate else np.array(t, np.float32)
            out *= np.float32(0.5)
            np.tanh(out, out=out)
            out += np.float32(1.0)
            out *= np.float32(0.5)
            self._pre = None
        else:
            self._pre = t
            out = np.clip(t, 0.0, 1.0).astype(np.float32)
        self._out = out
        return out

    def backward(self, g: np.ndarray) -> np.ndarray:
        assert self._out is not None, "backward before forward"
        if self.sigmoid:  # sigma' = sigma (1 - sigma)
            d = np.subtract(np.float32(1.0), self._out, dtype=np.float32)
            d *= self._out
            d *= g
            g = d
        else:  # the clip passes gradients only where it did not clip
            assert self._pre is not None
            g = (g * ((self._pre >= 0.0) & (self._pre <= 1.0))).astype(np.float32)
        if self.decorrelate:
            g = _mix_channels(COLOR_DECORRELATION.T, g)
        return np.asarray(g, np.float32)


class Parameterization:
    """Parameters -> images (N, C, H, W) in [0, 1], with the exact adjoint."""

    params: np.ndarray
    # The axis of `params` that indexes images (a spectrum's parameters are (re/im, N, ...)).
    batch_axis = 0

    def __init__(self, batch: int, channels: int, size: tuple[int, int]) -> None:
        self.batch, self.channels = int(batch), int(channels)
        self.size = (int(size[0]), int(size[1]))

    def image(self) -> np.ndarray:
        """The current image (N, C, H, W) float32 in [0, 1]; remembers what backward needs."""
        raise NotImplementedError

    def backward(self, grad_image: np.ndarray) -> np.ndarray:
        """d objective / d params for d objective / d image (the last `image()` call's)."""
        raise NotImplementedError


class PixelImage(Parameterization):
    """One parameter per pixel. `sd` scales the random start; with `decorrelate`/`sigmoid` the
    parameters live before those maps (lucid's default for non-FFT images)."""

    def __init__(
        self,
        batch: int,
        channels: int,
        size: tuple[int, int],
        sd: float = 0.01,
        decorrelate: bool = True,
        sigmoid: bool = True,
        rng: np.random.Generator | None = None,
        init: np.ndarray | None = None,
    ) -> None:
        super().__init__(batch, channels, size)
        rng = rng or np.random.default_rng(0)
        self.rgb = ToRGB(channels, decorrelate and channels == 3, sigmoid)
        shape = (self.batch, self.channels, *self.size)
        self.params = (
            (rng.standard_normal(shape) * sd).astype(np.float32)
            if init is None
            else np.ascontiguousarray(init, np.float32).reshape(shape)
        )

    def image(self) -> np.ndarray:
        return self.rgb.forward(self.params)

    def backward(self, grad_image: np.ndarray) -> np.ndarray:
        return self.rgb.backward(grad_image)


def rfft2_freqs(h: int, w: int) -> np.ndarray:
    """|f| of each rfft2 coefficient of an (h, w) image, in cycles per pixel: (h, w // 2 + 1)."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return np.sqrt(fx * fx + fy * fy)


def _hermitian_weights(w: int) -> np.ndarray:
    """How often each rfft column stands for a column of the full spectrum: 1 for the DC (and,
    for even widths, the Nyquist) column, 2 for the others. The adjoint of irfft2 is rfft2 times
    these over (h * w)."""
    c = np.full(w // 2 + 1, 2.0)
    c[0] = 1.0
    if w % 2 == 0:
        c[-1] = 1.0
    return c


class _Spectral(Parameterization):
    """Shared by the spectral parameterisations: image = ToRGB(irfft2(spectrum) / 4)."""

    # lucid divides the spatial image by 4 so the sigmoid starts in its linear range.
    _SCALE = 0.25

    def __init__(
        self, batch: int, channels: int, size: tuple[int, int], decorrelate: bool, sigmoid: bool
    ) -> None:
        super().__init__(batch, channels, size)
        self.rgb = ToRGB(channels, decorrelate and channels == 3, sigmoid)
        h, w = self.size
        self._weights = (_hermitian_weights(w) / (h * w)).astype(np.float32)

    def _spatial(self, spectrum: np.ndarray) -> np.ndarray:
        h, w = self.size
        spatial = scipy.fft.irfft2(spectrum.astype(np.complex64, copy=False), s=(h, w))
        spatial *= np.float32(self._SCALE)
        return spatial

    def _spectrum_grad(self, grad_image: np.ndarray) -> np.ndarray:
        """d objective / d spectrum (complex: d/dRe + i d/dIm) from d objective / d image."""
        g = self.rgb.backward(grad_image)
        g *= np.float32(self._SCALE)
        # scipy's FFT, in float32: numpy's forward FFTs took 7-8 ms at 8x3x128x128 here, in
        # float32 or float64, against 0.7 ms (and this runs every step).
        spectrum = scipy.fft.rfft2(g)
        spectrum *= self._weights
        return spectrum


class FFTImage(_Spectral):
    """A spectrum (real and imaginary parts) scaled by 1 / max(|f|, 1/max(h, w))^decay_power
    times sqrt(h w): lucid's `fft_image`. Its random start has std `sd` per part."""

    batch_axis = 1

    def __init__(
        self,
        batch: int,
        channels: int,
        size: tuple[int, int],
        sd: float = 0.01,
        decay_power: float = 1.0,
        decorrelate: bool = True,
        sigmoid: bool = True,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__(batch, channels, size, decorrelate, sigmoid)
        rng = rng or np.random.default_rng(0)
        h, w = self.size
        freqs = rfft2_freqs(h, w)
        self.scale = (
            1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** float(decay_power) * np.sqrt(h * w)
        ).astype(np.float32)
        self.params = (
            rng.standard_normal((2, self.batch, self.channels, h, w // 2 + 1)) * sd
        ).astype(np.float32)

    def image(self) -> np.ndarray:
        spectrum = np.empty(self.params.shape[1:], np.complex64)
        np.multiply(self.params[0], self.scale, out=spectrum.real)
        np.multiply(self.params[1], self.scale, out=spectrum.imag)
        return self.rgb.forward(self._spatial(spectrum))

    def backward(self, grad_image: np.ndarray) -> np.ndarray:
        gs = self._spectrum_grad(grad_image)
        out = np.empty(self.params.shape, np.float32)
        np.multiply(gs.real, self.scale, out=out[0])
        np.multiply(gs.imag, self.scale, out=out[1])
        return out


def magnitude_spectrum(
    images: Sequence[np.ndarray] | np.ndarray, size: tuple[int, int]
) -> np.ndarray:
    """The mean |rfft2| (C, h, w // 2 + 1) of uint8 RGB images resized to `size`, each channel
    standardised first: the fixed magnitude a MacoImage keeps."""
    import cv2

    h, w = size
    acc = None
    count = 0
    for img in images:
        a = cv2.resize(np.asarray(img), (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
        if a.ndim == 2:
            a = a[:, :, None]
        a = (a - a.mean((0, 1))) / (a.std((0, 1)) + 1e-6)
        mag = np.abs(np.fft.rfft2(a.transpose(2, 0, 1)))
        acc = mag if acc is None else acc + mag
        count += 1
    if acc is None:
        raise ConfigurationError(
            "MACO needs at least one image to estimate its magnitude spectrum."
        )
    return (acc / count).astype(np.float32)


class MacoImage(_Spectral):
    """Phase-only parameterisation (Fel et al. 2023): image = irfft2(|F| e^{i phase}) with |F|
    fixed (`magnitude`, from `magnitude_spectrum` of real photos), so every image keeps a
    natural power spectrum; only the phases (the structure) are optimised. The energy is fixed
    too, so the spatial image is scaled to unit standard deviation before the sigmoid (lucid's
    1/4 would leave every MACO image at low contrast)."""

    _SCALE = 1.0

    def __init__(
        self,
        batch: int,
        magnitude: np.ndarray,
        size: tuple[int, int],
        decorrelate: bool = True,
        sigmoid: bool = True,
        rng: np.random.Generator | None = None,
    ) -> None:
        channels = int(magnitude.shape[0])
        super().__init__(batch, channels, size, decorrelate, sigmoid)
        h, w = self.size
        if magnitude.shape[1:] != (h, w // 2 + 1):
            raise ConfigurationError(
                f"the magnitude spectrum has shape {magnitude.shape}, an image of {size} needs "
                f"({channels}, {h}, {w // 2 + 1}); estimate it at this size."
            )
        # The sigmoid expects values of order 1: scale the spatial image to unit std at start.
        self.magnitude = magnitude / (np.sqrt(np.mean(magnitude**2)) + 1e-12) * np.sqrt(h * w)
        self.magnitude = self.magnitude.astype(np.float32)
        rng = rng or np.random.default_rng(0)
        self.params = rng.uniform(-np.pi, np.pi, (self.batch, channels, h, w // 2 + 1)).astype(
            np.float32
        )

    def _spectrum(self) -> np.ndarray:
        return self.magnitude * np.exp(1j * self.params)

    def image(self) -> np.ndarray:
        self._spec = self._spectrum()
        return self.rgb.forward(self._spatial(self._spec))

    def backward(self, grad_image: np.ndarray) -> np.ndarray:
        gs = self._spectrum_grad(grad_image)
        spec = self._spec
        # d/dphase of (A cos p, A sin p) against (dRe, dIm): -dRe * Im + dIm * Re
        return (-gs.real * spec.imag + gs.imag * spec.real).astype(np.float32)


PARAMETERIZATIONS = ("fft", "pixel", "maco")

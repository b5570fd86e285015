"""Full-reference image quality metrics ("observers") in batched, jittable JAX.

Every metric has the signature ``fn(reference, distorted, data_range=1.0, ...)``. Grey inputs are
``(H, W)`` (one image, scalar result) or ``(N, H, W)`` (a batch, result of shape ``(N,)``). GMSD and
MDSI also take RGB, ``(H, W, 3)`` or ``(N, H, W, 3)``: a trailing axis of size 3 is read as colour.

Each follows a named original exactly (scikit-image for mse/psnr, the authors' MATLAB for
ssim/gmsd/mdsi; README "Observers", docs/SPEC.md section 4), so values check against published
numbers. Filters are sums of shifted slices: exact about alignment, and unchanged under jit and
vmap. Shape-changing options (``downsample``, ``combination``) must be Python values;
``data_range`` may be an array. Image means go one axis at a time (float32 sums to ~1e-7).
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np

# The 11-tap, sigma 1.5 Gaussian of Wang's ssim.m (fspecial('gaussian', 11, 1.5) is its outer product).
_SSIM_TAPS = 11
_SSIM_SIGMA = 1.5
_SSIM_K1, _SSIM_K2 = 0.01, 0.03
_GMSD_T = 170.0
_MDSI_C1, _MDSI_C2, _MDSI_C3 = 140.0, 55.0, 550.0


# ----------------------------------------------------------------------------------------------
# Input checks and small helpers
# ----------------------------------------------------------------------------------------------

def _is_rgb(image: chex.Array) -> bool:
    return image.ndim in (3, 4) and image.shape[-1] == 3


def _checked_pair(reference, distorted, allow_rgb: bool = False):
    """Converts both inputs to floating point and checks that they are one image or one batch."""
    reference, distorted = jnp.asarray(reference), jnp.asarray(distorted)
    try:
        chex.assert_equal_shape([reference, distorted])
        if allow_rgb and _is_rgb(reference):
            chex.assert_rank(reference, {3, 4})
        else:
            chex.assert_rank(reference, {2, 3})
    except AssertionError as error:
        kinds = "(H, W), (N, H, W), (H, W, 3) or (N, H, W, 3)" if allow_rgb else "(H, W) or (N, H, W)"
        raise ValueError(
            f"reference and distorted must have the same shape, one of {kinds}; got "
            f"{reference.shape} and {distorted.shape}") from error
    dtype = jnp.promote_types(reference.dtype, jnp.float32)
    return reference.astype(dtype), distorted.astype(dtype)


def _round_half_away_from_zero(value: float) -> int:
    """MATLAB's round (Python's round sends halves to the even neighbour)."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def _downsampling_factor(height: int, width: int) -> int:
    """The automatic factor of ssim.m and MDSI.m: max(1, round(min(H, W) / 256))."""
    return max(1, _round_half_away_from_zero(min(height, width) / 256))


def _image_mean(values: chex.Array) -> chex.Array:
    """Mean over the last two axes, one axis at a time (shorter float32 sums)."""
    return values.mean(axis=-1).mean(axis=-1)


def _image_std(values: chex.Array) -> chex.Array:
    """MATLAB std2 (normalised by n - 1), computed from centred values."""
    count = values.shape[-1] * values.shape[-2]
    centred = values - _image_mean(values)[..., None, None]
    return jnp.sqrt(_image_mean(centred**2) * (count / (count - 1)))


def _pad_last_two(image: chex.Array, before: int, after: int, mode: str) -> chex.Array:
    widths = [(0, 0)] * (image.ndim - 2) + [(before, after), (before, after)]
    return jnp.pad(image, widths, mode=mode)


def _correlate_valid(image: chex.Array, taps, axis: int) -> chex.Array:
    """1-D correlation along ``axis`` keeping only the fully covered ('valid') outputs."""
    length = image.shape[axis] - len(taps) + 1
    window = [slice(None)] * image.ndim
    total = 0.0
    for offset, weight in enumerate(taps):
        window[axis] = slice(offset, offset + length)
        total = total + weight * image[tuple(window)]
    return total


def _banded_correlate_valid(image: chex.Array, taps, axis: int, tile: int = 32) -> chex.Array:
    """`_correlate_valid` as tiles of a banded Toeplitz matrix product: several times faster
    than k shifted slices on a CPU, and a batched matmul on a GPU."""
    size = image.shape[axis]
    length = size - len(taps) + 1
    if length <= tile:
        return _correlate_valid(image, taps, axis)
    band = np.zeros((tile, tile + len(taps) - 1), np.float32)
    for row in range(tile):
        band[row, row:row + len(taps)] = taps
    starts = list(range(0, length - tile, tile)) + [length - tile]  # the last tile ends flush
    image = jnp.moveaxis(image, axis, -2)
    blocks = jnp.stack([image[..., s:s + band.shape[1], :] for s in starts], axis=-3)
    filtered = jnp.einsum("ij,...tjk->...tik", band, blocks,
                          precision=jax.lax.Precision.HIGHEST)
    overlap = starts[-2] + tile - starts[-1] if len(starts) > 1 else 0
    pieces = [filtered[..., t, :, :] for t in range(len(starts) - 1)]
    pieces.append(filtered[..., -1, overlap:, :])
    return jnp.moveaxis(jnp.concatenate(pieces, axis=-2), -2, axis)


def _box_downsample(image: chex.Array, factor: int, pad_mode: str) -> chex.Array:
    """f x f box mean, then every f-th pixel, in MATLAB 'same' alignment (rows i - (f-1)//2 ..
    i + f//2). ``pad_mode``: 'constant' as conv2 (GMSD, MDSI), 'symmetric' as ssim.m's imfilter.
    """
    if factor == 1:
        return image
    padded = _pad_last_two(image, (factor - 1) // 2, factor // 2, pad_mode)
    taps = [1.0 / factor] * factor
    averaged = _correlate_valid(_correlate_valid(padded, taps, axis=-2), taps, axis=-1)
    return averaged[..., ::factor, ::factor]


def _prewitt_magnitude(image: chex.Array) -> chex.Array:
    """Prewitt |gradient| (kernels / 3), zero-padded as conv2 'same' in GMSD.m and MDSI.m."""
    padded = _pad_last_two(image, 1, 1, "constant")
    smooth_rows = padded[..., :-2, :] + padded[..., 1:-1, :] + padded[..., 2:, :]
    smooth_cols = padded[..., :, :-2] + padded[..., :, 1:-1] + padded[..., :, 2:]
    grad_x = (smooth_rows[..., :, :-2] - smooth_rows[..., :, 2:]) / 3.0
    grad_y = (smooth_cols[..., :-2, :] - smooth_cols[..., 2:, :]) / 3.0
    return jnp.sqrt(grad_x**2 + grad_y**2)


def _similarity(a: chex.Array, b: chex.Array, constant: float) -> chex.Array:
    return (2.0 * a * b + constant) / (a**2 + b**2 + constant)


def _gaussian_taps(size: int, sigma: float) -> list:
    radius = (size - 1) / 2
    weights = [math.exp(-((i - radius) ** 2) / (2.0 * sigma**2)) for i in range(size)]
    return [w / sum(weights) for w in weights]


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------

def mse(reference, distorted, data_range=1.0):
    """Mean squared error per image, as scikit-image's ``mean_squared_error``.

    ``data_range`` is accepted for a uniform signature and not used.
    """
    del data_range
    reference, distorted = _checked_pair(reference, distorted)
    return _mse(reference, distorted)


def _mse(reference, distorted):
    return _image_mean((reference - distorted) ** 2)


def psnr(reference, distorted, data_range=1.0):
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / mse)``, as scikit-image's
    ``peak_signal_noise_ratio(..., data_range=data_range)``; identical images give +inf."""
    return 10.0 * jnp.log10(data_range**2 / mse(reference, distorted))


def ssim(reference, distorted, data_range=1.0, downsample=False):
    """Mean SSIM (Wang et al. 2004), as Wang's ``ssim.m``: 'valid' filtering, 1/n covariances;
    equal to scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)``. ``downsample=True`` adds ssim.m's automatic down-sampling,
    which the published MATLAB values include.
    """
    reference, distorted = _checked_pair(reference, distorted)
    return _ssim(reference, distorted, data_range, downsample)


def _ssim(reference, distorted, data_range, downsample):
    if downsample:
        factor = _downsampling_factor(*reference.shape[-2:])
        reference = _box_downsample(reference, factor, "symmetric")
        distorted = _box_downsample(distorted, factor, "symmetric")
    taps = _gaussian_taps(_SSIM_TAPS, _SSIM_SIGMA)

    # Second moments are shift-invariant; taking them about each image's global mean avoids the
    # float32 cancellation of E[x^2] - E[x]^2 when pixel values are large next to their spread.
    ref_mean = _image_mean(reference)[..., None, None]
    dist_mean = _image_mean(distorted)[..., None, None]
    ref_centred, dist_centred = reference - ref_mean, distorted - dist_mean
    def local_mean(stack):
        return _banded_correlate_valid(_banded_correlate_valid(stack, taps, axis=-2), taps, axis=-1)

    # The local statistics are filtered as stacks; the reference's own are kept apart so that
    # one reference broadcast against many distorted images is filtered once (`one_to_many`).
    mu_ref_centred, ref_sq = local_mean(jnp.stack([ref_centred, ref_centred**2]))
    mu_dist_centred, dist_sq, cross = local_mean(
        jnp.stack(jnp.broadcast_arrays(dist_centred, dist_centred**2, ref_centred * dist_centred)))
    var_ref = ref_sq - mu_ref_centred**2
    var_dist = dist_sq - mu_dist_centred**2
    covariance = cross - mu_ref_centred * mu_dist_centred
    # The window's weights sum to 1, so the local mean of x is the local mean of x - mean + mean.
    mu_ref, mu_dist = mu_ref_centred + ref_mean, mu_dist_centred + dist_mean

    c1 = (_SSIM_K1 * data_range) ** 2
    c2 = (_SSIM_K2 * data_range) ** 2
    ssim_map = ((2.0 * mu_ref * mu_dist + c1) * (2.0 * covariance + c2)
                / ((mu_ref**2 + mu_dist**2 + c1) * (var_ref + var_dist + c2)))
    return _image_mean(ssim_map)


def gmsd(reference, distorted, data_range=1.0):
    """Gradient magnitude similarity deviation (Xue et al. 2014), as their ``GMSD.m``; lower is
    better, 0 for identical images. Pixels scale by ``255 / data_range``, so the score depends
    on contrast (the old reference code rescaled by 255 / max).
    """
    reference, distorted = _checked_pair(reference, distorted, allow_rgb=True)
    return _gmsd(reference, distorted, data_range)


def _gmsd(reference, distorted, data_range):
    if _is_rgb(reference):
        luma = jnp.asarray([0.299, 0.587, 0.114], reference.dtype)
        reference, distorted = reference @ luma, distorted @ luma
    scale = 255.0 / data_range
    grad_ref = _prewitt_magnitude(_box_downsample(reference * scale, 2, "constant"))
    grad_dist = _prewitt_magnitude(_box_downsample(distorted * scale, 2, "constant"))
    return _image_std(_similarity(grad_ref, grad_dist, _GMSD_T))


def _to_lhm(image: chex.Array):
    """MDSI.m's colour transform of an (..., H, W, 3) image to luminance L and chromaticities H, M."""
    red, green, blue = image[..., 0], image[..., 1], image[..., 2]
    luminance = 0.2989 * red + 0.587 * green + 0.114 * blue
    chroma_h = 0.30 * red + 0.04 * green - 0.35 * blue
    chroma_m = 0.34 * red - 0.60 * green + 0.17 * blue
    return luminance, chroma_h, chroma_m


# Row sums of MDSI.m's L, H, M transform: what it gives for a grey pixel of value 1.
_LHM_GREY = (0.2989 + 0.587 + 0.114, 0.30 + 0.04 - 0.35, 0.34 - 0.60 + 0.17)


def _polar_power(value: chex.Array, exponent: float):
    """``value ** exponent`` on MATLAB's principal branch for real ``value``, as (|.|, angle)."""
    return jnp.abs(value) ** exponent, jnp.where(value < 0, exponent * jnp.pi, 0.0)


def mdsi(reference, distorted, data_range=1.0, combination="sum", alpha=0.6):
    """Mean deviation similarity index (Nafchi et al. 2016), as ``MDSI.m``; lower is better, 0
    for identical images; grey images count as R = G = B. Where GS or CS is negative MATLAB's
    powers turn complex: here they are (magnitude, angle) pairs on the same principal branch.
    """
    if combination not in ("sum", "mult"):
        raise ValueError(f"combination must be 'sum' or 'mult', got {combination!r}")
    reference, distorted = _checked_pair(reference, distorted, allow_rgb=True)
    return _mdsi(reference, distorted, data_range, combination, alpha)


def _mdsi(reference, distorted, data_range, combination, alpha):
    scale = 255.0 / data_range
    if _is_rgb(reference):
        factor = _downsampling_factor(*reference.shape[-3:-1])

        def prepare(image):
            channels_first = jnp.moveaxis(image * scale, -1, -3)
            return _to_lhm(jnp.moveaxis(_box_downsample(channels_first, factor, "constant"), -3, -1))
    else:
        factor = _downsampling_factor(*reference.shape[-2:])

        def prepare(image):
            # R = G = B: the colour transform collapses to three multiples of the grey image,
            # which saves building and filtering three equal channels.
            grey = _box_downsample(image * scale, factor, "constant")
            return grey * _LHM_GREY[0], grey * _LHM_GREY[1], grey * _LHM_GREY[2]

    lum_ref, h_ref, m_ref = prepare(reference)
    lum_dist, h_dist, m_dist = prepare(distorted)
    grad_ref, grad_dist = _prewitt_magnitude(lum_ref), _prewitt_magnitude(lum_dist)
    grad_fused = _prewitt_magnitude((lum_ref + lum_dist) / 2.0)
    gradient_similarity = (_similarity(grad_ref, grad_dist, _MDSI_C1)
                           + _similarity(grad_dist, grad_fused, _MDSI_C2)
                           - _similarity(grad_ref, grad_fused, _MDSI_C2))
    chroma_similarity = ((2.0 * (h_ref * h_dist + m_ref * m_dist) + _MDSI_C3)
                         / (h_ref**2 + h_dist**2 + m_ref**2 + m_dist**2 + _MDSI_C3))

    if combination == "sum":
        gcs = alpha * gradient_similarity + (1.0 - alpha) * chroma_similarity
        # GCS is real: z = GCS^0.25 is real where GCS >= 0 and |GCS|^0.25 e^{i pi/4} elsewhere.
        z_magnitude = jnp.sqrt(jnp.sqrt(jnp.abs(gcs)))
        negative = gcs < 0
        z_real = jnp.where(negative, z_magnitude * math.cos(math.pi / 4), z_magnitude)
        z_imag = jnp.where(negative, z_magnitude * math.sin(math.pi / 4), 0.0)
    else:
        gs_magnitude, gs_angle = _polar_power(gradient_similarity, 0.2)
        cs_magnitude, cs_angle = _polar_power(chroma_similarity, 0.1)
        gcs_magnitude, gcs_angle = gs_magnitude * cs_magnitude, gs_angle + cs_angle
        # The angles stay within (-pi, pi], so z's angle is 0.25 times GCS's.
        z_magnitude, z_angle = gcs_magnitude**0.25, gcs_angle * 0.25
        z_real, z_imag = z_magnitude * jnp.cos(z_angle), z_magnitude * jnp.sin(z_angle)
    deviation = jnp.hypot(z_real - _image_mean(z_real)[..., None, None],
                          z_imag - _image_mean(z_imag)[..., None, None])
    return _image_mean(deviation) ** 0.25


_CORES = {"mse": _mse, "ssim": _ssim, "gmsd": _gmsd, "mdsi": _mdsi}


def one_to_many(metric: str, reference, distorted, data_range=1.0, **options):
    """``metric`` of (N, H, W) references against their (N, M, H, W) distorted versions, (N, M);
    equal to every pair, with what depends on the reference alone computed once, not M times.
    """
    reference, distorted = jnp.asarray(reference), jnp.asarray(distorted)
    if reference.ndim != 3 or distorted.ndim != 4 or distorted.shape[:1] + distorted.shape[2:] != reference.shape:
        raise ValueError(f"one_to_many needs reference (N, H, W) and distorted (N, M, H, W); got "
                         f"{reference.shape} and {distorted.shape}")
    dtype = jnp.promote_types(reference.dtype, jnp.float32)
    reference, distorted = reference.astype(dtype)[:, None], distorted.astype(dtype)
    if metric == "psnr":
        return 10.0 * jnp.log10(data_range**2 / _mse(reference, distorted))
    if metric not in _CORES:
        raise ValueError(f"unknown metric {metric!r}; expected one of mse, psnr, ssim, gmsd, mdsi")
    defaults = {"ssim": {"downsample": False}, "mdsi": {"combination": "sum", "alpha": 0.6}}
    arguments = dict(defaults.get(metric, {}), **options)
    if metric == "mse":
        return _mse(reference, distorted)
    return _CORES[metric](reference, distorted, data_range, **arguments)

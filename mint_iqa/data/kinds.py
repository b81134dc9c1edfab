"""The defect kinds by name: which dimension each one damages, how an explanation names it, its coarse
group. Names only, no image code: explaining a score needs these words, not the image-processing libraries
of `mint_iqa.data.degradations`, where the function of each kind (same name) lives."""

from __future__ import annotations

from PIL import features

QUALITY: tuple[str, ...] = (
    "gaussian_blur",
    "motion_blur",
    "noise",
    "jpeg",
    "exposure",
    "lens_blur",
    "box_blur",
    "desaturate",
    "oversaturate",
    "colour_cast",
    "colour_quantise",
    "chromatic_aberration",
    "jpeg2000",
    "webp",
    "chroma_subsampling",
    "impulse_noise",
    "speckle_noise",
    "poisson_noise",
    "correlated_noise",
    "dither_noise",
    "denoise",
    "brighten",
    "darken",
    "mean_shift",
    "low_contrast",
    "vignetting",
    "pixelate",
    "resample",
    "jitter",
    "patch_swap",
    "colour_block",
    "ringing",
    "oversharpen",
    "contrast_boost",
    "posterise",
)
if not features.check("jpg_2000"):  # Pillow built without OpenJPEG
    QUALITY = tuple(k for k in QUALITY if k != "jpeg2000")
AUTHENTICITY: tuple[str, ...] = (
    "elastic_warp",
    "duplicated_patch",
    "smear",
    "implausible_colour",
    "grid",
    "swirl",
    "bulge",
    "tiled_repeat",
    "ghost",
    "melt",
    "plastic",
    "seam",
    "tile_shuffle",
    "transplant",
    "colour_bleed",
    "upsample_blocks",
    "ripple",
)

# How an explanation names each defect (used by the templated answers and the explainer metrics).
DEFECT_NAMES: dict[str, str] = {
    "gaussian_blur": "blur",
    "motion_blur": "motion blur",
    "noise": "noise",
    "jpeg": "compression artefacts",
    "exposure": "poor exposure",
    "elastic_warp": "warped geometry",
    "duplicated_patch": "a duplicated patch",
    "smear": "a smeared region",
    "implausible_colour": "implausible colours",
    "grid": "a grid pattern",
    "lens_blur": "defocus blur",
    "box_blur": "box blur",
    "desaturate": "washed-out colours",
    "oversaturate": "oversaturated colours",
    "colour_cast": "a colour cast",
    "colour_quantise": "a reduced palette",
    "chromatic_aberration": "colour fringing",
    "jpeg2000": "wavelet compression artefacts",
    "webp": "smudgy compression artefacts",
    "chroma_subsampling": "blocky colours",
    "impulse_noise": "salt-and-pepper noise",
    "speckle_noise": "speckle noise",
    "poisson_noise": "shot noise",
    "correlated_noise": "blotchy noise",
    "dither_noise": "dithering noise",
    "denoise": "heavy denoising",
    "brighten": "excessive brightness",
    "darken": "excessive darkness",
    "mean_shift": "a brightness offset",
    "low_contrast": "low contrast",
    "vignetting": "vignetting",
    "pixelate": "pixelation",
    "resample": "upscaling softness",
    "jitter": "pixel jitter",
    "patch_swap": "scrambled small patches",
    "colour_block": "stray colour blocks",
    "ringing": "ringing around edges",
    "oversharpen": "oversharpening",
    "contrast_boost": "excessive contrast",
    "posterise": "colour banding",
    "swirl": "a swirled region",
    "bulge": "a bulging or pinched region",
    "tiled_repeat": "a repeating tile",
    "ghost": "a ghosted double",
    "melt": "a melted region",
    "plastic": "a plastic-looking region",
    "seam": "a misaligned seam",
    "tile_shuffle": "shuffled tiles",
    "transplant": "a transplanted texture",
    "colour_bleed": "bleeding colours",
    "upsample_blocks": "blocky upsampling",
    "ripple": "aliasing ripples",
}

# Coarse family of every kind (quality: what a viewer would call the problem; authenticity: the mechanism).
GROUPS: dict[str, str] = {
    **dict.fromkeys(("gaussian_blur", "motion_blur", "lens_blur", "box_blur"), "blur"),
    **dict.fromkeys(
        ("desaturate", "oversaturate", "colour_cast", "colour_quantise", "chromatic_aberration"), "colour"
    ),
    **dict.fromkeys(("jpeg", "jpeg2000", "webp", "chroma_subsampling"), "compression"),
    **dict.fromkeys(
        (
            "noise",
            "impulse_noise",
            "speckle_noise",
            "poisson_noise",
            "correlated_noise",
            "dither_noise",
            "denoise",
        ),
        "noise",
    ),
    **dict.fromkeys(
        ("exposure", "brighten", "darken", "mean_shift", "low_contrast", "vignetting"), "brightness"
    ),
    **dict.fromkeys(("pixelate", "resample", "jitter", "patch_swap", "colour_block", "ringing"), "spatial"),
    **dict.fromkeys(("oversharpen", "contrast_boost", "posterise"), "sharpness"),
    **dict.fromkeys(("elastic_warp", "swirl", "bulge"), "geometry"),
    **dict.fromkeys(("duplicated_patch", "tiled_repeat", "ghost"), "repetition"),
    **dict.fromkeys(("smear", "melt", "plastic"), "smear"),
    **dict.fromkeys(("seam", "tile_shuffle"), "seam"),
    "transplant": "transplant",
    **dict.fromkeys(("implausible_colour", "colour_bleed"), "colour_region"),
    **dict.fromkeys(("grid", "upsample_blocks", "ripple"), "pattern"),
}
GROUPS = {k: g for k, g in GROUPS.items() if k in QUALITY or k in AUTHENTICITY}


def named_defects(text: str) -> set[str]:
    """The defect kinds a sentence names by their `DEFECT_NAMES` phrase; a phrase inside a longer one that is
    also there ("blur" in "motion blur") counts once, as the longer one."""
    text = text.lower()
    found = {k: p for k, p in DEFECT_NAMES.items() if k in GROUPS and p in text}
    return {k for k, p in found.items() if not any(p != q and p in q for q in found.values())}

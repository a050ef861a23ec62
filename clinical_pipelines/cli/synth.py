"""``clinical-pipelines synth``: synthetic drops in a landing zone, reproducibly by seed."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Data folder whose landing/ receives drops.")
@click.option("--store-url", help="Object store instead of --out (e.g. s3://bucket/prefix).")
@click.option("--seed", type=int, default=7, show_default=True, help="Same seed, same bytes.")
@click.option("--patients", type=int, default=6, show_default=True)
@click.option("--slices", type=int, default=4, show_default=True, help="DICOM slices per series.")
@click.option("--series", type=int, default=1, show_default=True, help="DICOM series per patient.")
@click.option("--notes", type=int, default=2, show_default=True, help="Clinical notes per patient.")
@click.option("--faults/--no-faults", default=False, help="Also write drops with known faults (truncated, unsafe...).")
@click.option("--canaries", type=click.Path(path_type=Path), help="Where to write planted identifiers (JSON).")
def synth(
    out_dir: Path | None,
    store_url: str | None,
    seed: int,
    patients: int,
    slices: int,
    series: int,
    notes: int,
    faults: bool,
    canaries: Path | None,
) -> None:
    """Write synthetic drops (DICOM, notes, tables) into a landing zone, reproducibly by seed."""
    from clinical_pipelines.cli._common import settings_for
    from clinical_pipelines.synth import SynthCorpus
    from clinical_pipelines.synth.landing import write_corpus

    if not out_dir and not store_url:
        raise click.UsageError("give --out DIR or --store-url URL")
    settings = settings_for(data_dir=out_dir, store_url=store_url)
    corpus = SynthCorpus(
        seed,
        n_patients=patients,
        slices_per_series=slices,
        dicom_series_per_patient=series,
        notes_per_patient=notes,
    )
    written = write_corpus(settings.open_store(), corpus, faults=faults)
    canary_path = canaries or (settings.data_dir / "synth" / "canaries.json")
    canary_path.parent.mkdir(parents=True, exist_ok=True)
    corpus.write_canaries(canary_path)
    click.echo(
        f"wrote {written.drops} drop(s), {written.files} file(s), {written.bytes / 1e6:.1f} MB to "
        f"{settings.store_url}/landing; {len(corpus.canaries())} canaries in {canary_path}"
    )


COMMANDS = [synth]

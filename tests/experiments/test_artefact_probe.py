"""The artefact probe on the real recordings: the shipped model's grid shows, the filters
alone show none."""

from experiments.artefact_probe import FILTERS_ALONE, main


def test_the_probe_finds_the_shipped_grid_and_none_in_the_filters_alone(real_file, capsys):
    real = real_file("face_dvxplorer.aedat4").parent
    assert main(["--real", str(real), "--seconds", "0.3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    face = lines.index(next(line for line in lines if "face_dvxplorer" in line))
    shipped, alone = lines[face + 1], lines[face + 2]
    assert shipped.startswith("| shipped |") and "even rows share" in shipped
    assert alone.startswith(f"| {FILTERS_ALONE} |") and alone.endswith("| none |")

"""The load image of runtime weights (`rtl/load_image.py`): what the rtl stage writes is what
the host reads back, and a damaged or foreign file is refused by name."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ticketforge.rtl.load_image import LoadImageError, Section, read_load_image, write_load_image

sections = st.lists(st.integers(1, 40).flatmap(lambda w: st.tuples(
    st.just(w), st.lists(st.integers(0, (1 << w) - 1), max_size=20))), min_size=1, max_size=5)


@settings(max_examples=60, deadline=None)
@given(sections, st.integers(0, (1 << 32) - 1))
def test_round_trip(tmp_path_factory, secs, design_id):
    path = tmp_path_factory.mktemp("img") / "weights.bin"
    written = write_load_image(path, design_id, [Section(i, f"m{i}", w, max(1, len(words)), tuple(words))
                                                 for i, (w, words) in enumerate(secs)])
    back = read_load_image(path)
    assert back == written and back.design_id == design_id
    assert [s.words for s in back.sections] == [tuple(words) for _, words in secs]


def test_damaged_foreign_and_missing_files_are_named(tmp_path):
    path = tmp_path / "weights.bin"
    write_load_image(path, 7, [Section(0, "rowptr", 12, 3, (1, 2, 4095))])
    raw = path.read_bytes()
    path.write_bytes(raw[:20] + bytes([raw[20] ^ 1]) + raw[21:])
    with pytest.raises(LoadImageError, match="fails its SHA-256.*ticketforge rtl"):
        read_load_image(path)
    path.write_bytes(raw[:-5])
    with pytest.raises(LoadImageError, match="fails its SHA-256"):
        read_load_image(path)
    path.write_bytes(b"PNG\0" + raw[4:])
    with pytest.raises(LoadImageError, match="not a ticketforge load image"):
        read_load_image(path)
    with pytest.raises(LoadImageError, match="cannot read the load image"):
        read_load_image(tmp_path / "nope.bin")
    with pytest.raises(ValueError, match="word 4096 of rowptr does not fit its 12 bits"):
        write_load_image(path, 7, [Section(0, "rowptr", 12, 3, (4096,))])

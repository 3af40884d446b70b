"""Parse errors name the exact file line: blank lines count as lines, and a UTF-8 error has a line too."""

from __future__ import annotations

import pytest

from unirec_lab.data.scenarios import raw
from unirec_lab.data.scenarios.mind import read_behaviors, read_tsv
from unirec_lab.data.scenarios.raw import RawDataError

GOOD = ["1\tU1\t11/9/2019 8:00:00 AM\tN1 N2\tN10-1 N11-0",
        "2\tU2\t11/10/2019 9:30:00 PM\t\tN10-0 N13-1"]
BAD_TIME = "3\tU1\tyesterday\tN1\tN14-0"


@pytest.mark.parametrize("blanks", ["\n", "\n\n", " \n\r\n"])  # empty, several, whitespace-only / CRLF
def test_mind_error_line_after_blank_lines(tmp_path, blanks):
    p = tmp_path / "behaviors.tsv"
    p.write_text(GOOD[0] + "\n" + blanks + GOOD[1] + "\n" + BAD_TIME + "\n")
    line = 1 + blanks.count("\n") + 2  # GOOD[0], the blank lines, GOOD[1], then the bad one
    with pytest.raises(RawDataError, match=rf"behaviors\.tsv:{line}: unparsable time 'yesterday'"):
        read_behaviors(p)


def test_mind_field_count_error_counts_blank_lines(tmp_path):
    p = tmp_path / "behaviors.tsv"
    p.write_text(GOOD[0] + "\n\n\n" + GOOD[1] + "\textra\n")
    with pytest.raises(RawDataError, match=r"behaviors\.tsv:4: expected 5 tab-separated fields, found 6$"):
        read_behaviors(p)


def test_utf8_error_names_the_line(tmp_path):
    p = tmp_path / "behaviors.tsv"
    p.write_bytes(("\n".join(GOOD) + "\n\n").encode() + b"3\tU1\t11/9/2019 8:00:00 AM\tN1\tN\xff4-0\n")
    msg = r"behaviors\.tsv:4: not valid UTF-8 text \(byte 0xff at column 31, file offset \d+: invalid start byte\)"
    with pytest.raises(RawDataError, match=msg):
        read_tsv(p, ["impression", "user", "time", "history", "impressions"])
    with pytest.raises(RawDataError, match=msg):
        raw.read_lines(p)


def test_utf8_error_deep_in_a_large_file_names_its_line(tmp_path):
    p = tmp_path / "big.tsv"  # pandas decodes in chunks: its offset alone would point to the wrong place
    body = (GOOD[0] + "\n") * 20000
    p.write_bytes(body.encode() + b"9\tU\xc3\x28\tx\ty\tz\n")
    with pytest.raises(RawDataError, match=r"big\.tsv:20001: not valid UTF-8 text \(byte 0xc3 at column 4,"):
        read_tsv(p, ["impression", "user", "time", "history", "impressions"])


def test_data_line_skips_what_pandas_skips(tmp_path):
    p = tmp_path / "t.tsv"
    p.write_text("a\tb\n\n  \n\t\nc\td\r\n\r\ne\tf\n")  # a lone tab is a row for sep='\t' (two empty fields)
    assert [raw.data_line(p, i, "\t") for i in range(4)] == [1, 4, 5, 7]
    assert len(read_tsv(p, ["x", "y"])) == 4
    q = tmp_path / "t.csv"
    q.write_text("1,2\n\t\n3,4\n")
    assert [raw.data_line(q, i, ",") for i in range(2)] == [1, 3]


def test_int_table_rating_error_counts_blank_lines(tmp_path):
    import hashlib

    from unirec_lab.data.scenarios.amazon_hin import AmazonHinScenario

    files = {"user_item.dat": "1\t1\t5\t10\n\n\n2\t2\t9\t11\n", "item_category.dat": "0,0\n",
             "item_brand.dat": "0,0\n", "item_view.dat": "0,5\n"}
    folder = tmp_path / "ecommerce" / "amazon_hin"
    folder.mkdir(parents=True)
    rows = ["file\tbytes\tsha256\tsource"]
    for name, text in files.items():
        (folder / name).write_text(text)
        rows.append(f"{name}\t{len(text)}\t{hashlib.sha256(text.encode()).hexdigest()}\thttp://example.invalid")
    (folder / "MANIFEST.tsv").write_text("\n".join(rows) + "\n")
    with pytest.raises(RawDataError, match=r"user_item\.dat:4: rating 9 outside 1\.\.5"):
        AmazonHinScenario("ecommerce", tmp_path).build()


def test_json_errors_name_the_line(tmp_path):
    p = tmp_path / "attrs.json"
    p.write_text('{\n  "1": [1, 2],\n  "2": [3,, 4]\n}\n')
    with pytest.raises(RawDataError, match=r"attrs\.json:3: not valid JSON \(Expecting value at column 11\)"):
        raw.read_json(p)
    p.write_bytes(b'{\n"1": "\xe9"}\n')
    with pytest.raises(RawDataError, match=r"attrs\.json:2: not valid UTF-8 text"):
        raw.read_json(p)

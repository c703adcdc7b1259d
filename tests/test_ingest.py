"""Each adapter on broken inputs: every problem names its file and line, and is either an error or
a counted fallback (see docs/data.md)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from industrial.data.prepare import PrepareConfig, prepare_dataset
from industrial.data.schema import DatasetError


def jpeg_bytes(color=(200, 30, 30), size=(24, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG")
    return buffer.getvalue()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def prepare(tmp_path: Path, fmt: str, source: Path, **options) -> Path:
    out = tmp_path / "out"
    return prepare_dataset(PrepareConfig(format=fmt, source=str(source), out=str(out), overwrite=True, **options))


def stats(root: Path) -> dict:
    return json.loads((root / "stats.json").read_text())


def items(root: Path) -> dict[str, dict]:
    return {row["source_id"]: row for row in pq.read_table(root / "items.parquet").to_pylist()}


# ------------------------------------------------------------------------------------- generic


GOOD_EVENTS = "user_id,item_id,timestamp\nu1,a,0\nu1,b,1\nu1,c,2\nu1,d,3\nu2,a,5\nu2,b,6\nu2,c,7\n"


def generic_source(tmp_path: Path, items_csv: str, events_csv: str = GOOD_EVENTS) -> Path:
    source = tmp_path / "shop"
    write(source / "items.csv", items_csv)
    write(source / "events.csv", events_csv)
    return source


def test_generic_images_text_and_fallbacks(tmp_path):
    source = generic_source(
        tmp_path,
        "item_id,text,image\n"
        "a,a red cup,img/a.jpg\n"
        "b,,img/b.jpg\n"  # empty text: null, counted; image kept: image-only
        "c,a plate,img/missing.jpg\n"  # missing image: text-only, counted
        "d,,img/broken.jpg\n",  # empty text and truncated image: ID-only
    )
    (source / "img").mkdir()
    (source / "img" / "a.jpg").write_bytes(jpeg_bytes())
    (source / "img" / "b.jpg").write_bytes(jpeg_bytes((0, 0, 255)))
    (source / "img" / "broken.jpg").write_bytes(jpeg_bytes()[:300])
    root = prepare(tmp_path, "generic", source)
    s = stats(root)
    assert s["fallbacks"]["text_empty"] == 2
    assert s["fallbacks"]["image_missing"] == 1 and s["fallbacks"]["image_corrupt"] == 1
    kinds = ("items_with_text_and_image", "items_text_only", "items_image_only", "items_id_only")
    assert [s[k] for k in kinds] == [1, 1, 1, 1]
    assert any("items.csv:3" in e for e in s["examples"]["text_empty"])
    assert "items.csv:4" in s["examples"]["image_missing"][0]
    assert "items.csv:5" in s["examples"]["image_corrupt"][0]
    rows = items(root)
    assert (rows["a"]["image_path"], rows["a"]["image_bytes"], rows["a"]["text"]) == ("img/a.jpg", None, "a red cup")
    assert rows["b"]["text"] is None and rows["d"]["image_path"] is None
    meta = json.loads((root / "meta.json").read_text())
    assert meta["fallbacks"] == s["fallbacks"] and Path(meta["image_root"]) == source.resolve()


def test_generic_embeds_image_bytes(tmp_path):
    source = generic_source(tmp_path, "item_id,text,image\na,cup,a.jpg\nb,x,\nc,y,\nd,z,\n")
    (source / "a.jpg").write_bytes(jpeg_bytes())
    root = prepare(tmp_path, "generic", source, embed_images=True)
    assert items(root)["a"]["image_bytes"] == (source / "a.jpg").read_bytes()


@pytest.mark.parametrize("path", ["../outside.jpg", "/etc/hostname", "img/../../outside.jpg"])
def test_generic_image_path_escaping_the_folder(tmp_path, path):
    (tmp_path / "outside.jpg").write_bytes(jpeg_bytes())
    source = generic_source(tmp_path, f"item_id,text,image\na,cup,{path}\nb,x,\nc,y,\nd,z,\n")
    with pytest.raises(DatasetError, match=r"items\.csv:2: image path .* escapes the dataset folder"):
        prepare(tmp_path, "generic", source)
    root = prepare(tmp_path, "generic", source, on_bad_row="skip")
    assert stats(root)["fallbacks"]["image_path_escapes"] == 1
    assert items(root)["a"]["image_path"] is None and items(root)["a"]["text"] == "cup"


def test_generic_symlink_out_of_the_folder_escapes(tmp_path):
    (tmp_path / "outside.jpg").write_bytes(jpeg_bytes())
    source = generic_source(tmp_path, "item_id,image\na,link.jpg\nb,\nc,\nd,\n")
    (source / "link.jpg").symlink_to(tmp_path / "outside.jpg")
    with pytest.raises(DatasetError, match=r"items\.csv:2: .*escapes"):
        prepare(tmp_path, "generic", source)


def test_generic_malformed_rows(tmp_path):
    source = generic_source(tmp_path, "item_id,text\na,x\nb,y\nc,z\nd,w\n", GOOD_EVENTS + "u3,a\nu3,b,not-a-time\n")
    with pytest.raises(DatasetError, match=r"events\.csv:9: expected 3 fields"):
        prepare(tmp_path, "generic", source)
    root = prepare(tmp_path, "generic", source, on_bad_row="skip")
    s = stats(root)
    assert s["fallbacks"]["malformed_row"] == 2
    first = s["examples"]["malformed_row"][0]
    assert first.endswith("events.csv:9: expected 3 fields (user_id, item_id, timestamp), got 2")
    assert "events.csv:10: timestamp 'not-a-time'" in s["examples"]["malformed_row"][1]
    assert s["events"] == 7


def test_generic_unknown_item(tmp_path):
    source = generic_source(tmp_path, "item_id,text\na,x\nb,y\nc,z\nd,w\n", GOOD_EVENTS + "u3,zzz,9\n")
    with pytest.raises(DatasetError, match=r"events\.csv:9: item 'zzz' .*is not in .*items\.csv"):
        prepare(tmp_path, "generic", source)
    assert stats(prepare(tmp_path, "generic", source, on_bad_row="skip"))["fallbacks"]["unknown_item"] == 1


def test_generic_missing_column_names_the_file(tmp_path):
    source = generic_source(tmp_path, "id,text\na,x\n")
    with pytest.raises(DatasetError, match=r"items\.csv:1: missing column\(s\) \['item_id'\]"):
        prepare(tmp_path, "generic", source)


def test_generic_jsonl_domains_iso_times_and_positions(tmp_path):
    source = tmp_path / "mine"
    write(
        source / "items.jsonl",
        '{"item_id": 1, "text": "one", "domain": "books"}\n{"item_id": 1, "text": "uno", "domain": "films"}\n'
        '{"item_id": 2, "text": "two", "domain": "books"}\nnot json\n',
    )
    write(
        source / "events.jsonl",
        '{"user_id": "u", "item_id": 1, "domain": "films", "timestamp": "2020-01-02"}\n'
        '{"user_id": "u", "item_id": 1, "domain": "books", "timestamp": "2020-01-01T00:00:00"}\n'
        '{"user_id": "u", "item_id": 2, "domain": "books", "timestamp": 1577923200}\n',
    )
    with pytest.raises(DatasetError, match=r"items\.jsonl:4: not valid JSON"):
        prepare(tmp_path, "generic", source)
    root = prepare(tmp_path, "generic", source, on_bad_row="skip")
    events = pq.read_table(root / "events.parquet").to_pylist()
    expected = [("books", 1577836800), ("films", 1577923200), ("books", 1577923200)]
    assert [(e["domain"], e["timestamp"]) for e in events] == expected
    assert stats(root)["domains"].keys() == {"books", "films"}
    # an event without domain is ambiguous when the id exists in two domains
    write(
        source / "events.jsonl",
        '{"user_id": "u", "item_id": 2, "timestamp": 1}\n{"user_id": "u", "item_id": 1, "timestamp": 2}\n',
    )
    write(source / "items.jsonl", (source / "items.jsonl").read_text().replace("not json\n", ""))
    with pytest.raises(DatasetError, match=r"events\.jsonl:2: item '1' exists in domains \['books', 'films'\]"):
        prepare(tmp_path, "generic", source)


def test_generic_without_timestamps_uses_positions(tmp_path):
    source = generic_source(tmp_path, "item_id\na\nb\nc\n", "user_id,item_id\nu,c\nv,a\nu,b\nu,a\n")
    root = prepare(tmp_path, "generic", source)
    events = pq.read_table(root / "events.parquet").to_pylist()
    assert [e["timestamp"] for e in events] == [0, 1, 2, 0]
    assert json.loads((root / "meta.json").read_text())["timestamps"] == "position"
    assert stats(root)["items_id_only"] == 3


# ------------------------------------------------------------------------------------- unisrec


def unisrec_source(tmp_path: Path, train: str, valid: str, test: str, text: str = "") -> Path:
    source = tmp_path / "uni"
    write(source / "D.item2index", "".join(f"I{i}\t{i}\n" for i in range(6)))
    write(source / "D.user2index", "U0\t0\nU1\t1\n")
    text = text or "".join(f"I{i}\titem {i}\n" for i in range(6))
    write(source / "D.text", "item_id:token\ttext:token_seq\n" + text)
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    for split, rows in (("train", train), ("valid", valid), ("test", test)):
        write(source / f"D.{split}.inter", header + rows)
    return source


UNI_TRAIN = "0\t0 1\t2\n0\t0\t1\n1\t3\t4\n"
UNI_VALID = "0\t0 1 2\t3\n1\t3 4\t5\n"
UNI_TEST = "0\t0 1 2 3\t4\n1\t3 4 5\t0\n"


def test_unisrec_rebuilds_sequences(tmp_path):
    root = prepare(tmp_path, "unisrec", unisrec_source(tmp_path, UNI_TRAIN, UNI_VALID, UNI_TEST))
    assert pq.read_table(root / "train.parquet").column("item_ids").to_pylist() == [[0, 1, 2], [3, 4]]
    assert pq.read_table(root / "test.parquet").to_pylist() == [
        {"user_id": 0, "history": [0, 1, 2, 3], "target": 4},
        {"user_id": 1, "history": [3, 4, 5], "target": 0},
    ]
    assert items(root)["I2"]["text"] == "item 2"


def test_unisrec_bad_rows(tmp_path):
    source = unisrec_source(tmp_path, UNI_TRAIN + "1\t3 x\t4\n", UNI_VALID, UNI_TEST)
    with pytest.raises(DatasetError, match=r"D\.train\.inter:5: 'x' is not an integer id"):
        prepare(tmp_path, "unisrec", source)
    source = unisrec_source(tmp_path, UNI_TRAIN, UNI_VALID.replace("\t5\n", "\t9\n"), UNI_TEST)
    with pytest.raises(DatasetError, match=r"D\.valid\.inter:3: item index 9 is not in D\.item2index"):
        prepare(tmp_path, "unisrec", source)
    source = unisrec_source(tmp_path, UNI_TRAIN, UNI_VALID, UNI_TEST.replace("0\t0 1 2 3\t4", "0\t0 5 2 3\t4"))
    with pytest.raises(DatasetError, match=r"D\.test\.inter:2: the history of user 'U0' .* does not continue"):
        prepare(tmp_path, "unisrec", source)
    source = unisrec_source(tmp_path, UNI_TRAIN, UNI_VALID, UNI_TEST, text="I1\tfine\nZ9\tunknown\nI2\t  \n")
    with pytest.raises(DatasetError, match=r"D\.text:3: item 'Z9' is not in .*D\.item2index"):
        prepare(tmp_path, "unisrec", source)
    root = prepare(tmp_path, "unisrec", source, on_bad_row="skip")
    s = stats(root)
    assert s["fallbacks"] == {"unknown_item": 1, "text_empty": 1}
    assert "D.text:4" in s["examples"]["text_empty"][0]
    assert s["items_without_text"] == 5


# ------------------------------------------------------------------------------------- minionerec


def minionerec_source(tmp_path: Path, valid_rows: str, test_rows: str, items: dict | None = None) -> Path:
    source = tmp_path / "mini"
    default = {"description": "['long text']", "brand": "B", "categories": ""}
    items = items or {str(i): {"title": f"thing {i}", **default} for i in range(5)}
    write(source / "index" / "Dom.item.json", json.dumps(items, indent=2))
    header = "user_id,history_item_title,item_title,history_item_id,item_id,history_item_sid,item_sid\n"
    write(source / "valid" / "Dom_5_x.csv", header + valid_rows)
    write(source / "test" / "Dom_5_x.csv", header + test_rows)
    return source


def test_minionerec_rows_and_text(tmp_path):
    valid = 'A1,t,t,"[0, 1]",2,s,s\nA1,t,t,"[0, 1, 2]",3,s,s\n'
    source = minionerec_source(tmp_path, valid, 'A1,t,t,"[0, 1, 2, 3]",4,s,s\nA2,t,t,[1],0,s,s\n')
    root = prepare(tmp_path, "minionerec", source, text_fields=["title", "brand", "description"])
    assert pq.read_table(root / "train.parquet").column("item_ids").to_pylist() == [[0, 1], [1]]
    assert pq.read_table(root / "valid.parquet").column("target").to_pylist() == [2, 3]
    assert pq.read_table(root / "users.parquet").column("source_id").to_pylist() == ["Dom:A1", "Dom:A2"]
    assert items(root)["0"]["text"] == "thing 0. B. long text."


def test_minionerec_never_evaluates_data(tmp_path):
    source = minionerec_source(tmp_path, "A1,t,t,\"__import__('os').system('touch pwned')\",2,s,s\n", "")
    with pytest.raises(DatasetError, match=r"valid/Dom_5_x\.csv:2: history_item_id .* is not a list literal"):
        prepare(tmp_path, "minionerec", source)
    assert not Path("pwned").exists() and not (tmp_path / "pwned").exists()


def test_minionerec_unknown_item_and_bad_json(tmp_path):
    source = minionerec_source(tmp_path, 'A1,t,t,"[0, 7]",2,s,s\n', "")
    with pytest.raises(DatasetError, match=r"valid/Dom_5_x\.csv:2: item '7' of domain 'Dom' is not in .*\.item\.json"):
        prepare(tmp_path, "minionerec", source)
    write(source / "index" / "Dom.item.json", '{\n  "0": {"title": "x"},\n  "1": {"title": }\n}\n')
    with pytest.raises(DatasetError, match=r"Dom\.item\.json:3: not valid JSON"):
        prepare(tmp_path, "minionerec", source)


def test_minionerec_empty_text_names_the_line(tmp_path):
    items = {"0": {"title": "x"}, "1": {"title": " ", "brand": ""}}
    source = minionerec_source(tmp_path, 'A1,t,t,"[0]",1,s,s\n', "", items=items)
    s = stats(prepare(tmp_path, "minionerec", source))
    assert s["fallbacks"] == {"text_empty": 1} and s["items_id_only"] == 1
    assert "Dom.item.json:5: item '1' has an empty text" in s["examples"]["text_empty"][0]


def test_minionerec_unknown_domain(tmp_path):
    source = minionerec_source(tmp_path, 'A1,t,t,"[0]",1,s,s\n', "")
    with pytest.raises(DatasetError, match=r"unknown domain\(s\) \['Books'\]; available: \['Dom'\]"):
        prepare(tmp_path, "minionerec", source, domains=["Books"])


# ------------------------------------------------------------------------------------- s3rec


def test_s3rec_bad_lines(tmp_path):
    source = tmp_path / "s3"
    write(source / "Toys.txt", "1 1 2 3\n2 2 3 4 1\n3 x 2\n4\n1 5 6\n")
    write(source / "Toys_sample.txt", "1 9 9\n")
    with pytest.raises(DatasetError, match=r"Toys\.txt:3: 'x' is not an integer id"):
        prepare(tmp_path, "s3rec", source)
    s = stats(prepare(tmp_path, "s3rec", source, on_bad_row="skip"))
    assert s["fallbacks"] == {"malformed_row": 3}
    assert "Toys.txt:4: user 4 has no items" in s["examples"]["malformed_row"][1]
    assert "Toys.txt:5: user 1 is already listed at" in s["examples"]["malformed_row"][2]
    assert (s["users"], s["items"], s["events"]) == (2, 4, 7)


# ------------------------------------------------------------------------------------- movielens


def movielens_source(tmp_path: Path, ratings: str) -> Path:
    source = tmp_path / "ml"
    write(
        source / "items.csv",
        "movie_id,title,overview\n1,Toy Story (1995),Toys\n2,GoldenEye (1995),\n"
        "2,GoldenEye (1995),dup\n3,Heat (1995),\n",
    )
    write(source / "ratings.csv", "user_id,movie_id,rating,unix_timestamp\n" + ratings)
    (source / "posters").mkdir(exist_ok=True)
    (source / "posters" / "1.jpg").write_bytes(jpeg_bytes())
    (source / "posters" / "2.jpg").write_bytes(b"not an image at all")
    return source


def test_movielens_fallbacks_and_errors(tmp_path):
    source = movielens_source(tmp_path, "7,1,5,100\n7,2,3,90\n7,3,4,110\n")
    root = prepare(tmp_path, "movielens", source)
    s = stats(root)
    assert s["fallbacks"] == {"duplicate_item_row": 1, "image_corrupt": 1, "image_missing": 1}
    assert "items.csv:4: item '2' already defined at" in s["examples"]["duplicate_item_row"][0]
    assert "items.csv:3" in s["examples"]["image_corrupt"][0] and "items.csv:5" in s["examples"]["image_missing"][0]
    assert pq.read_table(root / "test.parquet").to_pylist() == [{"user_id": 0, "history": [1, 0], "target": 2}]
    source = movielens_source(tmp_path, "7,1,5,100\n7,99,3,90\n")
    with pytest.raises(DatasetError, match=r"ratings\.csv:3: item '99' of domain 'MovieLens' is not in .*items\.csv"):
        prepare(tmp_path, "movielens", source)
    source = movielens_source(tmp_path, "7,1,5,yesterday\n")
    with pytest.raises(DatasetError, match=r"ratings\.csv:2: unix_timestamp 'yesterday' is not an integer"):
        prepare(tmp_path, "movielens", source)


# ------------------------------------------------------------------------------------- hm


def hm_source(tmp_path: Path, transactions: str) -> Path:
    source = tmp_path / "hm"
    write(
        source / "articles.csv",
        "article_id,prod_name,product_type_name,colour_group_name,detail_desc\n"
        "0111565001,Stockings,Tights,Black,Semi shiny.\n111586001,Tights,Tights,Black,\n",
    )
    write(source / "transactions_train.csv", "t_dat,customer_id,article_id,price,sales_channel_id\n" + transactions)
    image = source / "images" / "011" / "0111565001.jpg"
    image.parent.mkdir(parents=True)
    image.write_bytes(jpeg_bytes())
    return source


def test_hm_articles_dates_and_content(tmp_path):
    source = hm_source(
        tmp_path, "2020-01-02,c1,0111565001,0.1,2\n2020-01-01,c1,0111586001,0.1,2\n2020-01-02,c1,0999999001,0.1,1\n"
    )
    root = prepare(tmp_path, "hm", source)
    rows = items(root)
    assert rows["0111565001"]["text"] == "Stockings. Tights. Black. Semi shiny."
    assert rows["0111565001"]["image_path"] == "images/011/0111565001.jpg"
    assert rows["0111586001"]["image_path"] is None and rows["0999999001"]["text"] is None
    s = stats(root)
    assert s["fallbacks"]["item_without_metadata"] == 1 and s["fallbacks"]["image_missing"] == 2
    example = s["examples"]["item_without_metadata"][0]
    assert "transactions_train.csv:4: article 0999999001 is not in articles.csv" in example
    events = pq.read_table(root / "events.parquet").to_pylist()
    assert [e["timestamp"] for e in events] == [1577836800, 1577923200, 1577923200]  # same day: file order
    root = prepare(tmp_path, "hm", source, require_content="both")
    assert stats(root)["events"] == 1 and stats(root)["fallbacks"]["events_dropped_content"] == 2


def test_hm_bad_date(tmp_path):
    source = hm_source(tmp_path, "2020-01-02,c1,0111565001,0.1,2\n20/01/2020,c1,0111565001,0.1,2\n")
    with pytest.raises(DatasetError, match=r"transactions_train\.csv:3: timestamp '20/01/2020' is neither"):
        prepare(tmp_path, "hm", source)

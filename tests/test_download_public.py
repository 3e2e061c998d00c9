"""The public non-GLUE sets of datasets/download_glue.py (IMDB, Yelp-5, 20NG, Hyperpartisan,
SQuAD), against tiny archives in each real layout served from file:// URLs: no internet."""
import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import zipfile

import pytest

from conftest import REPO_ROOT, load_downloader




download_glue = load_downloader()

PROCESS_TIMEOUT_SECONDS = 120

IMDB_MEMBERS = {  # the aclImdb_v1.tar.gz layout, a few files of each kind
    "aclImdb/README": "Large Movie Review Dataset v1.0\n",
    "aclImdb/imdb.vocab": "the\nand\n",
    "aclImdb/imdbEr.txt": "0.0490972013402\n",
    "aclImdb/train/labeledBow.feat": "9 0:9 1:1\n",
    "aclImdb/train/unsupBow.feat": "0 0:1\n",
    "aclImdb/train/urls_pos.txt": "http://www.imdb.com/title/tt0453418/usercomments\n",
    "aclImdb/train/pos/0_9.txt": "Bromwell High is a cartoon comedy.<br /><br />Great.",
    "aclImdb/train/pos/10_7.txt": "A fine film \u2014 well acted.",
    "aclImdb/train/neg/0_3.txt": "Story of a man who has unnatural feelings for a pig.",
    "aclImdb/train/unsup/0_0.txt": "Unlabelled review.",
    "aclImdb/test/labeledBow.feat": "10 0:7\n",
    "aclImdb/test/urls_neg.txt": "http://www.imdb.com/title/tt0064354/usercomments\n",
    "aclImdb/test/pos/0_10.txt": "I went and saw this movie last night.",
    "aclImdb/test/neg/0_2.txt": "Once again Mr. Costner has dragged out a movie.",
}
IMDB_TASK = {"name": "IMDB", "input_format": "folders", "train_file": "train", "dev_file": "test",
             "labels": ["neg", "pos"], "truncation": "head_tail"}

YELP_TRAIN = ('"5","dr. goldberg offers everything i look for in a general practitioner."\n'
              '"2","Unfortunately, the frustration of Dr. Goldberg\'s patients ""is"" real."\n')
YELP_TEST = '"1","I got \'new\' tires from them and within two weeks got a flat."\n'
YELP_TASK = {"name": "Yelp-5", "input_format": "csv", "header": False, "train_file": "train.csv",
             "dev_file": "test.csv", "text_a_column": 2, "label_column": 1,
             "labels": ["1", "2", "3", "4", "5"], "truncation": "head_tail"}

NEWSGROUP_MEMBERS = {  # name: bytes; 20news-bydate files are latin-1
    "20news-bydate-train/rec.autos/102994": b"From: a@b.c\nSubject: cars\n\nNice car.\n",
    "20news-bydate-train/alt.atheism/53": b"From: x@y.z\nSubject: Re: God\n\nCaf\xe9 talk.\n",
    "20news-bydate-train/alt.atheism/101": b"Subject: first\n\nHello.\n",
    "20news-bydate-test/sci.space/60000": b"Subject: orbit\n\nTo the moon.\n",
    "20news-bydate-test/comp.graphics/38758": b"Subject: pixels\n\n\xa9 1993\n",
}
NEWSGROUP_TASK = {"name": "20NG", "input_format": "jsonl", "train_file": "train.jsonl",
                  "dev_file": "test.jsonl", "text_a_column": "text", "label_column": "label",
                  "truncation": "head_tail"}

HYPERPARTISAN_TASK = {"name": "Hyperpartisan", "input_format": "jsonl", "train_file": "train.jsonl",
                      "dev_file": "dev.jsonl", "test_file": "test.jsonl", "text_a_column": "text",
                      "label_column": "label", "labels": ["false", "true"],
                      "truncation": "head_tail"}
HYPERPARTISAN_ARTICLE_COUNT = 23  # n // 10 = 2: 19 train, 2 dev, 2 test

SQUAD_FILES = {
    "train-v1.1.json": {"version": "1.1", "data": [{"title": "Normans", "paragraphs": [
        {"context": "The Normans were in France.", "qas": [
            {"id": "q1", "question": "Where?",
             "answers": [{"text": "France", "answer_start": 20}]}]}]}]},
    "dev-v1.1.json": {"version": "1.1", "data": []},
    "train-v2.0.json": {"version": "v2.0", "data": [{"title": "Beyonce", "paragraphs": []}]},
    "dev-v2.0.json": {"version": "v2.0", "data": []},
}


def write_tar(path, members, mode="w:gz"):
    """members: name -> str or bytes, written in the given order."""
    with tarfile.open(path, mode) as archive:
        for name, content in members.items():
            data = content.encode("utf-8") if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def article_id(index):
    return f"{index:07d}"


def build_hyperpartisan_site(folder, count=HYPERPARTISAN_ARTICLE_COUNT):
    """The two by-article zips of Zenodo record 1489920, each holding one XML file in its schema."""
    folder.mkdir(exist_ok=True)
    articles = ['<?xml version="1.0" encoding="UTF-8"?>', "<articles>"]
    truth = ['<?xml version="1.0" encoding="UTF-8"?>', "<articles>"]
    for index in range(count):
        articles.append(
            f'<article id="{article_id(index)}" published-at="2017-09-{index % 28 + 1:02d}" '
            f'title="Title {index}: &quot;news&quot; &amp; views">\n'
            f"<p>First paragraph of article {index}.</p>\n"
            f'<p>Read <a href="http://example.com/{index}" type="external">the   report</a>,\n'
            f"then <q>quote \u2014 {index}</q> ends it.</p>\n<p>  </p>\n</article>")
        truth.append(f'<article hyperpartisan="{"true" if index % 3 == 0 else "false"}" '
                     f'id="{article_id(index)}" labeled-by="article" '
                     f'url="https://example.com/{index}"/>')
    articles.append("</articles>")
    truth.append("</articles>")
    for zip_name, xml_lines in (
            ("articles-training-byarticle-20181122.zip", articles),
            ("ground-truth-training-byarticle-20181122.zip", truth)):
        with zipfile.ZipFile(folder / zip_name, "w") as archive:
            archive.writestr(zip_name.replace(".zip", ".xml"), "\n".join(xml_lines) + "\n")
    return folder


def expected_article(index):
    return {"id": article_id(index),
            "text": (f'Title {index}: "news" & views\nFirst paragraph of article {index}.\n'
                     f"Read the report, then quote \u2014 {index} ends it."),
            "label": "true" if index % 3 == 0 else "false"}


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def files_below(folder):
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


@pytest.fixture
def site(tmp_path):
    """Every public archive in its real layout, in one folder; file:// URLs for each."""
    folder = tmp_path / "site"
    folder.mkdir()
    write_tar(folder / "aclImdb_v1.tar.gz", IMDB_MEMBERS)
    write_tar(folder / "yelp_review_full_csv.tgz", {
        "yelp_review_full_csv/readme.txt": "Yelp Review Full Star Dataset\n",
        "yelp_review_full_csv/train.csv": YELP_TRAIN,
        "yelp_review_full_csv/test.csv": YELP_TEST})
    write_tar(folder / "20news-bydate.tar.gz", NEWSGROUP_MEMBERS)
    build_hyperpartisan_site(folder / "zenodo")
    (folder / "squad").mkdir()
    for name, content in SQUAD_FILES.items():
        (folder / "squad" / name).write_text(json.dumps(content), encoding="utf-8")
    return folder


def url_flags(site):
    return ["--imdb_url", (site / "aclImdb_v1.tar.gz").as_uri(),
            "--yelp5_url", (site / "yelp_review_full_csv.tgz").as_uri(),
            "--20ng_url", (site / "20news-bydate.tar.gz").as_uri(),
            "--hyperpartisan_base_url", (site / "zenodo").as_uri(),
            "--squad_base_url", (site / "squad").as_uri()]


def download(site, data_dir, tasks, *extra):
    return download_glue.main(["--tasks", tasks, "--data_dir", str(data_dir), *url_flags(site),
                               *extra])


def one_error_line(capsys):
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("download_glue: error: "), error
    return error


def test_imdb_keeps_only_the_labelled_reviews_as_shipped(tmp_path, site, capsys):
    data_dir = tmp_path / "data"
    assert download(site, data_dir, "imdb") == 0
    imdb = data_dir / "IMDB"
    kept = {name[len("aclImdb/"):]: content for name, content in IMDB_MEMBERS.items()
            if name.count("/") == 3 and name.split("/")[2] in ("pos", "neg")}
    assert files_below(imdb) == sorted(list(kept) + ["task.json"])
    for name, content in kept.items():
        assert (imdb / name).read_text(encoding="utf-8") == content
    assert json.loads((imdb / "task.json").read_text(encoding="utf-8")) == IMDB_TASK
    assert [path.name for path in data_dir.iterdir()] == ["IMDB"]  # no staging folder left
    assert "IMDB: done" in capsys.readouterr().out


def test_yelp_csv_files_are_copied_as_shipped(tmp_path, site):
    data_dir = tmp_path / "data"
    assert download(site, data_dir, "yelp-5") == 0
    yelp = data_dir / "Yelp-5"
    assert files_below(yelp) == ["task.json", "test.csv", "train.csv"]
    assert (yelp / "train.csv").read_bytes() == YELP_TRAIN.encode("utf-8")
    assert (yelp / "test.csv").read_bytes() == YELP_TEST.encode("utf-8")
    assert json.loads((yelp / "task.json").read_text(encoding="utf-8")) == YELP_TASK


def test_20ng_becomes_sorted_jsonl_decoded_as_latin1(tmp_path, site):
    data_dir = tmp_path / "data"
    assert download(site, data_dir, "20ng") == 0
    newsgroups = data_dir / "20NG"
    assert files_below(newsgroups) == ["task.json", "test.jsonl", "train.jsonl"]
    assert read_jsonl(newsgroups / "train.jsonl") == [  # (group, file name), names as strings
        {"text": "Subject: first\n\nHello.\n", "label": "alt.atheism"},
        {"text": "From: x@y.z\nSubject: Re: God\n\nCaf\u00e9 talk.\n", "label": "alt.atheism"},
        {"text": "From: a@b.c\nSubject: cars\n\nNice car.\n", "label": "rec.autos"}]
    assert read_jsonl(newsgroups / "test.jsonl") == [
        {"text": "Subject: pixels\n\n\u00a9 1993\n", "label": "comp.graphics"},
        {"text": "Subject: orbit\n\nTo the moon.\n", "label": "sci.space"}]
    assert (newsgroups / "train.jsonl").read_text(encoding="utf-8").count("\n") == 3
    assert json.loads((newsgroups / "task.json").read_text(encoding="utf-8")) == NEWSGROUP_TASK


def test_hyperpartisan_is_converted_and_split_by_the_hash_of_the_id(tmp_path, site):
    data_dir = tmp_path / "data"
    assert download(site, data_dir, "Hyperpartisan") == 0
    folder = data_dir / "Hyperpartisan"
    assert files_below(folder) == ["dev.jsonl", "task.json", "test.jsonl", "train.jsonl"]
    assert json.loads((folder / "task.json").read_text(encoding="utf-8")) == HYPERPARTISAN_TASK

    # The documented rule: order by SHA-256 of the id; last n // 10 test, the n // 10 before dev.
    ids = [article_id(index) for index in range(HYPERPARTISAN_ARTICLE_COUNT)]
    ordered = sorted(ids, key=lambda id_: hashlib.sha256(id_.encode()).hexdigest())
    expected = {"train.jsonl": ordered[:19], "dev.jsonl": ordered[19:21],
                "test.jsonl": ordered[21:]}
    for file_name, split_ids in expected.items():
        assert read_jsonl(folder / file_name) == [expected_article(int(id_))
                                                  for id_ in sorted(split_ids)]

    first = {path.name: path.read_bytes() for path in folder.iterdir()}
    assert download(site, data_dir, "hyperpartisan", "--force") == 0
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == first  # deterministic


def test_squad_files_are_kept_as_downloaded_under_both_versions(tmp_path, site):
    data_dir = tmp_path / "data"
    assert download(site, data_dir, "squad_all") == 0
    assert files_below(data_dir) == [
        "SQuAD-v1.1/dev-v1.1.json", "SQuAD-v1.1/train-v1.1.json",
        "SQuAD-v2.0/dev-v2.0.json", "SQuAD-v2.0/train-v2.0.json"]
    for version in ("SQuAD-v1.1", "SQuAD-v2.0"):
        for path in (data_dir / version).iterdir():
            assert path.read_bytes() == (site / "squad" / path.name).read_bytes()


@pytest.mark.parametrize("content, message", [
    ("{not json", r"dev-v2\.0\.json is not valid JSON"),
    ('{"version": "v2.0", "data": {}}', r'dev-v2\.0\.json is not a SQuAD file: no "data" list'),
    ("[1, 2]", r'dev-v2\.0\.json is not a SQuAD file: no "data" list'),
])
def test_squad_file_without_a_data_list_fails_and_leaves_nothing(tmp_path, site, capsys, content,
                                                                 message):
    (site / "squad" / "dev-v2.0.json").write_text(content, encoding="utf-8")
    data_dir = tmp_path / "data"
    assert download(site, data_dir, "SQuAD-v2.0") == download_glue.EXIT_FAILURE
    error = one_error_line(capsys)
    assert error.startswith("download_glue: error: SQuAD-v2.0: ")
    assert re.search(message, error), error
    assert list(data_dir.iterdir()) == []


def test_present_set_is_skipped_unless_forced(tmp_path, site, capsys):
    data_dir = tmp_path / "data"
    assert download(site, data_dir, "yelp") == 0
    write_tar(site / "yelp_review_full_csv.tgz", {
        "yelp_review_full_csv/train.csv": '"3","new"\n',
        "yelp_review_full_csv/test.csv": '"4","x"\n'})

    assert download(site, data_dir, "yelp") == 0
    assert "Yelp-5: already present" in capsys.readouterr().out
    assert (data_dir / "Yelp-5" / "train.csv").read_bytes() == YELP_TRAIN.encode("utf-8")

    assert download(site, data_dir, "yelp", "--force") == 0
    assert (data_dir / "Yelp-5" / "train.csv").read_text(encoding="utf-8") == '"3","new"\n'
    assert [path.name for path in data_dir.iterdir()] == ["Yelp-5"]


def test_missing_file_gives_one_line_and_no_folder(tmp_path, site, capsys):
    (site / "20news-bydate.tar.gz").unlink()
    data_dir = tmp_path / "data"
    assert download(site, data_dir, "20NG") == download_glue.EXIT_FAILURE
    error = one_error_line(capsys)
    assert f"20NG: cannot read {(site / '20news-bydate.tar.gz').as_uri()}: No such file" in error
    assert list(data_dir.iterdir()) == []


def test_missing_ground_truth_zip_leaves_no_folder(tmp_path, site, capsys):
    (site / "zenodo" / "ground-truth-training-byarticle-20181122.zip").unlink()
    data_dir = tmp_path / "data"
    assert download(site, data_dir, "hyperpartisan") == download_glue.EXIT_FAILURE
    assert "ground-truth-training-byarticle-20181122.zip: No such file" in one_error_line(capsys)
    assert list(data_dir.iterdir()) == []


def test_a_later_failure_keeps_the_sets_already_done(tmp_path, site, capsys):
    (site / "squad" / "train-v1.1.json").unlink()
    data_dir = tmp_path / "data"
    assert download(site, data_dir, "20NG,SQuAD-v1.1") == download_glue.EXIT_FAILURE
    assert "SQuAD-v1.1: cannot read" in one_error_line(capsys)
    assert [path.name for path in data_dir.iterdir()] == ["20NG"]


@pytest.mark.parametrize("damage", ["not_gzip", "truncated", "not_tar"])
def test_broken_archive_is_one_line_and_no_folder(tmp_path, site, capsys, damage):
    archive = site / "aclImdb_v1.tar.gz"
    if damage == "not_gzip":
        archive.write_text("<html>Moved</html>")
    elif damage == "truncated":
        archive.write_bytes(archive.read_bytes()[:200])
    else:
        archive.write_bytes(gzip.compress(b"this is no tar archive" * 40))
    data_dir = tmp_path / "data"
    assert download(site, data_dir, "IMDB") == download_glue.EXIT_FAILURE
    error = one_error_line(capsys)
    assert f"IMDB: {archive.as_uri()} is not a valid tar.gz archive (" in error
    assert list(data_dir.iterdir()) == []


@pytest.mark.parametrize("evil_name", [
    "aclImdb/train/pos/../../../../evil.txt", "../evil.txt", "/tmp/evil.txt"])
def test_tar_member_escaping_the_folder_is_refused(tmp_path, site, capsys, evil_name):
    write_tar(site / "aclImdb_v1.tar.gz", {**IMDB_MEMBERS, evil_name: "gotcha"})
    data_dir = tmp_path / "data" / "inner"
    assert download(site, data_dir, "imdb") == download_glue.EXIT_FAILURE
    error = one_error_line(capsys)
    assert f"unsafe member path {evil_name!r}" in error
    assert list(data_dir.iterdir()) == []
    assert not list(tmp_path.rglob("evil.txt"))


def test_unsafe_member_outside_the_kept_files_is_refused_too(tmp_path, site, capsys):
    write_tar(site / "yelp_review_full_csv.tgz", {
        "yelp_review_full_csv/train.csv": YELP_TRAIN, "yelp_review_full_csv/test.csv": YELP_TEST,
        "../readme.txt": "x"})
    assert download(site, tmp_path / "data", "Yelp-5") == download_glue.EXIT_FAILURE
    assert "unsafe member path '../readme.txt'" in one_error_line(capsys)
    assert list((tmp_path / "data").iterdir()) == []


def test_archive_without_the_expected_files_names_what_is_missing(tmp_path, site, capsys):
    members = {name: content for name, content in IMDB_MEMBERS.items()
               if not name.startswith("aclImdb/test/neg/")}
    write_tar(site / "aclImdb_v1.tar.gz", members)
    write_tar(site / "20news-bydate.tar.gz", {"20news-bydate-train/sci.med/1": b"x"})
    assert download(site, tmp_path / "data", "IMDB") == download_glue.EXIT_FAILURE
    assert "lacks the IMDB review files of aclImdb/test/neg" in one_error_line(capsys)
    assert download(site, tmp_path / "data", "20NG") == download_glue.EXIT_FAILURE
    assert "lacks the newsgroup files of 20news-bydate-test" in one_error_line(capsys)
    assert list((tmp_path / "data").iterdir()) == []


@pytest.mark.parametrize("damage, message", [
    ("bad_xml", r"articles-training-byarticle-20181122\.zip: not valid XML"),
    ("no_label", r"article '0000022' has no hyperpartisan=false\|true entry"),
    ("not_zip", r"ground-truth-training-byarticle-20181122\.zip is not a valid zip archive"),
])
def test_broken_hyperpartisan_files_fail_with_one_line(tmp_path, site, capsys, damage, message):
    zenodo = site / "zenodo"
    if damage == "bad_xml":
        with zipfile.ZipFile(zenodo / "articles-training-byarticle-20181122.zip", "w") as archive:
            archive.writestr("articles-training-byarticle-20181122.xml", "<articles><article>")
    elif damage == "no_label":
        build_hyperpartisan_site(tmp_path / "fewer", count=HYPERPARTISAN_ARTICLE_COUNT - 1)
        name = "ground-truth-training-byarticle-20181122.zip"
        (zenodo / name).write_bytes((tmp_path / "fewer" / name).read_bytes())
    else:
        (zenodo / "ground-truth-training-byarticle-20181122.zip").write_text("Not found")
    assert download(site, tmp_path / "data", "Hyperpartisan") == download_glue.EXIT_FAILURE
    error = one_error_line(capsys)
    assert re.search(message, error), error
    assert list((tmp_path / "data").iterdir()) == []


def test_task_names_groups_and_all():
    assert download_glue.parse_task_list("imdb,YELP-5, 20ng,hyperpartisan,squad-v1.1,Squad-V2.0") \
        == ["IMDB", "Yelp-5", "20NG", "Hyperpartisan", "SQuAD-v1.1", "SQuAD-v2.0"]
    assert download_glue.parse_task_list("long_documents") == ["IMDB", "Yelp-5", "20NG",
                                                               "Hyperpartisan"]
    assert download_glue.parse_task_list("SQUAD_ALL,squad2") == ["SQuAD-v1.1", "SQuAD-v2.0"]
    assert download_glue.parse_task_list("rte,public")[:2] == ["RTE", "IMDB"]
    assert download_glue.parse_task_list("all") == list(download_glue.TASKS)  # GLUE only
    assert not set(download_glue.PUBLIC_SETS) & set(download_glue.parse_task_list("all"))
    with pytest.raises(ValueError, match=r"unknown task 'squad'; valid tasks: CoLA, .*IMDB"):
        download_glue.parse_task_list("squad")


def test_help_says_all_is_glue_only_and_names_every_url_flag():
    process = subprocess.run([sys.executable, "datasets/download_glue.py", "--help"],
                             cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=PROCESS_TIMEOUT_SECONDS)
    assert process.returncode == 0
    text = " ".join(process.stdout.split())
    assert "'all' (GLUE only" in text and "long_documents" in text and "squad_all" in text
    for flag in ("--imdb_url", "--yelp5_url", "--20ng_url", "--hyperpartisan_base_url",
                 "--squad_base_url"):
        assert flag in text


def test_command_line_as_a_process(tmp_path, site):
    data_dir = tmp_path / "data"
    command = [sys.executable, "datasets/download_glue.py", "--tasks", "20NG,yelp5",
               "--data_dir", str(data_dir), *url_flags(site)]
    process = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=PROCESS_TIMEOUT_SECONDS)
    assert process.returncode == 0, process.stderr
    assert process.stderr == ""
    assert "20NG: done" in process.stdout and "Yelp-5: done" in process.stdout
    assert len(read_jsonl(data_dir / "20NG" / "train.jsonl")) == 3
    assert (data_dir / "Yelp-5" / "test.csv").read_bytes() == YELP_TEST.encode("utf-8")

    (site / "20news-bydate.tar.gz").write_bytes(b"\x1f\x8b broken")
    process = subprocess.run(command + ["--force"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=PROCESS_TIMEOUT_SECONDS)
    assert process.returncode == download_glue.EXIT_FAILURE
    assert "Traceback" not in process.stderr and process.stderr.count("\n") == 1
    assert process.stderr.startswith("download_glue: error: 20NG: ")
    assert len(read_jsonl(data_dir / "20NG" / "train.jsonl")) == 3  # the old copy is kept

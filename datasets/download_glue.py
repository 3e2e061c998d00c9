"""Downloads the GLUE tasks, and a few public non-GLUE sets, into <data_dir>/<TASK>/.

    python datasets/download_glue.py --tasks all --data_dir datasets
    python datasets/download_glue.py --tasks CoLA,SST-2 --data_dir datasets --base_url http://host/glue
    python datasets/download_glue.py --tasks long_documents,squad_all --data_dir datasets

Standard library only, so it runs before the project's environment exists. Every task is
fetched and unpacked in a hidden staging folder inside data_dir and renamed into place at the
end, so an interrupted run never leaves a half-written task folder; present tasks are skipped
unless --force is given.

MRPC is not redistributed by GLUE as a zip: its train/dev/test.tsv are derived here from the
Microsoft msr_paraphrase_{train,test}.txt files plus GLUE's list of dev-set id pairs.

`--tasks all` means the GLUE tasks only. The public sets are named one by one (any
capitalisation) or by group: long_documents = IMDB, Yelp-5, 20NG, Hyperpartisan;
squad_all = SQuAD-v1.1, SQuAD-v2.0; public = all six. Each classification set gets a
task.json (the project's user-task description). Only Hyperpartisan has a dev split of its own:
for IMDB, Yelp-5 and 20NG, task.json's dev_file is the public test split.

- IMDB (--imdb_url, aclImdb_v1.tar.gz): train/{pos,neg}/*.txt and test/{pos,neg}/*.txt as
  shipped; train/unsup, the .feat, vocabulary and url files are dropped.
- Yelp-5 (--yelp5_url, yelp_review_full_csv.tgz): train.csv and test.csv as shipped (no header;
  columns: label 1-5, text).
- 20NG (--20ng_url, 20news-bydate.tar.gz): train.jsonl and test.jsonl, one
  {"text", "label": <newsgroup>} per line, files read as latin-1 and sorted by (group, file name).
- Hyperpartisan (--hyperpartisan_base_url): SemEval-2019 task 4, the by-article training set
  (645 articles) from Zenodo record 1489920, files articles-training-byarticle-20181122.zip and
  ground-truth-training-byarticle-20181122.zip. If that record's files are not reachable, the
  same files are in the open record 5776081: --hyperpartisan_base_url
  https://zenodo.org/records/5776081/files. Each article becomes {"id", "text", "label":
  "true"|"false"}, text = its title, then each paragraph with the XML tags removed and white
  space collapsed, one per line. Split: articles ordered by the SHA-256 of their id; the last
  tenth (n // 10) is test.jsonl, the tenth before it dev.jsonl, the rest train.jsonl; each file
  in id order. (Longformer's hp-splits.json is not used: its train and test splits are
  reported to share documents, allenai/longformer#234.)
- SQuAD-v1.1 and SQuAD-v2.0 (--squad_base_url): {train,dev}-v1.1.json and {train,dev}-v2.0.json,
  each checked to be JSON with a "data" list.
Archives are read member by member: a member with an absolute path or `..` fails the task, and
tar members are extracted with tarfile's "data" filter where this Python has it.
"""
import argparse
import contextlib
import gzip
import hashlib
import http.client
import json
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import xml.etree.ElementTree as ElementTree
import zipfile
import zlib

DEFAULT_BASE_URL = "https://dl.fbaipublicfiles.com/glue/data"
DEFAULT_MRPC_BASE_URL = "https://dl.fbaipublicfiles.com/senteval/senteval_data"
BASE_URL_ENV = "GLUE_BASE_URL"
MRPC_BASE_URL_ENV = "GLUE_MRPC_BASE_URL"
DEFAULT_DATA_DIR = "datasets"
PROGRAM = "download_glue"
REQUEST_TIMEOUT_SECONDS = 60
EXIT_FAILURE = 1  # bad input and failed downloads alike, as every command of the project

TASKS = ("CoLA", "SST-2", "MRPC", "QQP", "STS-B", "MNLI", "QNLI", "RTE", "WNLI", "AX")
TASK_ALIASES = {"sst": "SST-2", "sst2": "SST-2", "sts": "STS-B", "stsb": "STS-B", "diagnostic": "AX"}

# Remote archive names; QNLI is the v2 release and QQP the cleaned one, as GLUE now serves them.
TASK_ARCHIVES = {
    "CoLA": "CoLA.zip",
    "SST-2": "SST-2.zip",
    "QQP": "QQP-clean.zip",
    "STS-B": "STS-B.zip",
    "MNLI": "MNLI.zip",
    "QNLI": "QNLIv2.zip",
    "RTE": "RTE.zip",
    "WNLI": "WNLI.zip",
}
STANDARD_SPLITS = ("train.tsv", "dev.tsv", "test.tsv")
EXPECTED_FILES = {task: STANDARD_SPLITS for task in TASK_ARCHIVES}
EXPECTED_FILES["MNLI"] = ("train.tsv", "dev_matched.tsv", "dev_mismatched.tsv",
                          "test_matched.tsv", "test_mismatched.tsv")

AX_REMOTE_NAME = "AX.tsv"
AX_LOCAL_NAME = "diagnostic.tsv"

MRPC_TRAIN_SOURCE = "msr_paraphrase_train.txt"
MRPC_TEST_SOURCE = "msr_paraphrase_test.txt"
MRPC_DEV_IDS_REMOTE_NAME = "mrpc_dev_ids.tsv"
MRPC_DEV_IDS_LOCAL_NAME = "dev_ids.tsv"
MRPC_FIELD_COUNT = 5  # Quality, #1 ID, #2 ID, #1 String, #2 String
MRPC_TEST_HEADER = "index\t#1 ID\t#2 ID\t#1 String\t#2 String"

STAGING_PREFIX = ".download-"
IGNORED_ARCHIVE_ENTRIES = ("__MACOSX",)

# Public non-GLUE sets: not part of `all`; each has one URL (or base URL) flag.
PUBLIC_SETS = ("IMDB", "Yelp-5", "20NG", "Hyperpartisan", "SQuAD-v1.1", "SQuAD-v2.0")
PUBLIC_ALIASES = {"yelp": "Yelp-5", "yelp5": "Yelp-5", "20newsgroups": "20NG", "20news": "20NG",
                  "squad1": "SQuAD-v1.1", "squad1.1": "SQuAD-v1.1", "squad_v1.1": "SQuAD-v1.1",
                  "squad2": "SQuAD-v2.0", "squad2.0": "SQuAD-v2.0", "squad_v2.0": "SQuAD-v2.0"}
# No bare 'squad': it would not say which version (the group is squad_all).
TASK_GROUPS = {"long_documents": ("IMDB", "Yelp-5", "20NG", "Hyperpartisan"),
               "squad_all": ("SQuAD-v1.1", "SQuAD-v2.0"), "public": PUBLIC_SETS}
SQUAD_BASE_URL = "https://rajpurkar.github.io/SQuAD-explorer/dataset"
DEFAULT_PUBLIC_URLS = {
    "IMDB": "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
    "Yelp-5": "https://s3.amazonaws.com/fast-ai-nlp/yelp_review_full_csv.tgz",
    "20NG": "http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz",
    "Hyperpartisan": "https://zenodo.org/records/1489920/files",
    "SQuAD-v1.1": SQUAD_BASE_URL,
    "SQuAD-v2.0": SQUAD_BASE_URL,
}
SQUAD_FILES = {"SQuAD-v1.1": ("train-v1.1.json", "dev-v1.1.json"),
               "SQuAD-v2.0": ("train-v2.0.json", "dev-v2.0.json")}
HYPERPARTISAN_ARTICLES = "articles-training-byarticle-20181122.zip"
HYPERPARTISAN_GROUND_TRUTH = "ground-truth-training-byarticle-20181122.zip"
HYPERPARTISAN_LABELS = ("false", "true")
IMDB_SPLITS = ("train", "test")
IMDB_LABELS = ("neg", "pos")
YELP_FILES = ("train.csv", "test.csv")
NEWSGROUP_SPLITS = {"20news-bydate-train": "train.jsonl", "20news-bydate-test": "test.jsonl"}
TASK_DESCRIPTIONS = {  # <SET>/task.json: the project's user-task description, paths relative to it
    "IMDB": {"name": "IMDB", "input_format": "folders", "train_file": "train", "dev_file": "test",
             "labels": list(IMDB_LABELS), "truncation": "head_tail"},
    "Yelp-5": {"name": "Yelp-5", "input_format": "csv", "header": False, "train_file": "train.csv",
               "dev_file": "test.csv", "text_a_column": 2, "label_column": 1,
               "labels": ["1", "2", "3", "4", "5"], "truncation": "head_tail"},
    "20NG": {"name": "20NG", "input_format": "jsonl", "train_file": "train.jsonl",
             "dev_file": "test.jsonl", "text_a_column": "text", "label_column": "label",
             "truncation": "head_tail"},
    "Hyperpartisan": {"name": "Hyperpartisan", "input_format": "jsonl", "train_file": "train.jsonl",
                      "dev_file": "dev.jsonl", "test_file": "test.jsonl", "text_a_column": "text",
                      "label_column": "label", "labels": list(HYPERPARTISAN_LABELS),
                      "truncation": "head_tail"},
}
TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)
TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.11.4


class GlueDownloadError(RuntimeError):
    """A task could not be fetched or its files do not have the expected content."""


VALID_TASKS_TEXT = (f"valid tasks: {', '.join(TASKS + PUBLIC_SETS)} "
                    f"(or the groups 'all' = GLUE, {', '.join(TASK_GROUPS)})")


def resolve_task_name(name):
    """Accepts any capitalisation of a GLUE task or public set name (and a few aliases)."""
    by_lower = {task.lower(): task for task in TASKS + PUBLIC_SETS}
    key = name.strip().lower()
    if key in by_lower:
        return by_lower[key]
    if key in TASK_ALIASES:
        return TASK_ALIASES[key]
    if key in PUBLIC_ALIASES:
        return PUBLIC_ALIASES[key]
    raise ValueError(f"unknown task {name!r}; {VALID_TASKS_TEXT}")


def parse_task_list(tasks_flag):
    """Task names and groups, comma-separated; `all` is GLUE only."""
    names = []
    for name in (part.strip() for part in tasks_flag.split(",")):
        if name.lower() == "all":
            names.extend(TASKS)
        elif name.lower() in TASK_GROUPS:
            names.extend(TASK_GROUPS[name.lower()])
        elif name:
            names.append(resolve_task_name(name))
    if not names:
        raise ValueError(f"no tasks given; {VALID_TASKS_TEXT}")
    return list(dict.fromkeys(names))


def _join_url(base_url, file_name):
    return f"{base_url.rstrip('/')}/{file_name}"


def fetch(url, destination):
    """Streams url into destination; any network failure becomes a one-line GlueDownloadError."""
    with open(destination, "wb") as out:
        try:
            with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT_SECONDS) as response:
                shutil.copyfileobj(response, out)
        except urllib.error.HTTPError as error:
            raise GlueDownloadError(
                f"cannot download {url}: HTTP {error.code} {error.reason}") from None
        except urllib.error.URLError as error:
            if isinstance(error.reason, OSError) and url.lower().startswith("file:"):
                raise GlueDownloadError(
                    f"cannot read {url}: {error.reason.strerror or error.reason}") from None
            raise GlueDownloadError(
                f"cannot download {url}: network is unreachable ({error.reason})") from None
        except (ConnectionError, TimeoutError, http.client.HTTPException) as error:
            raise GlueDownloadError(
                f"cannot download {url}: connection failed ({str(error) or type(error).__name__})"
            ) from None


def _extract_archive(archive_path, url, destination):
    """Unzips and returns the folder holding the task files (GLUE zips wrap them in one folder)."""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            archive.extractall(destination)
    except zipfile.BadZipFile:
        raise GlueDownloadError(f"{url} is not a valid zip archive") from None
    entries = [name for name in os.listdir(destination) if name not in IGNORED_ARCHIVE_ENTRIES]
    if len(entries) == 1 and os.path.isdir(os.path.join(destination, entries[0])):
        return os.path.join(destination, entries[0])
    return destination


def _check_expected_files(task, folder, source):
    missing = [name for name in EXPECTED_FILES[task]
               if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise GlueDownloadError(f"{source} lacks the {task} files: {', '.join(missing)}")


def _read_mrpc_rows(path):
    """Returns (header line, rows of 5 fields); the header keeps its byte-order mark, as GLUE's does."""
    with open(path, encoding="utf-8") as source:
        lines = source.read().split("\n")
    rows = []
    for line_number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.strip().split("\t")
        if len(fields) != MRPC_FIELD_COUNT:
            raise GlueDownloadError(
                f"{path}:{line_number}: found {len(fields)} fields, expected {MRPC_FIELD_COUNT}")
        rows.append(fields)
    return lines[0].strip(), rows


def _read_mrpc_dev_ids(path):
    with open(path, encoding="utf-8") as source:
        return {tuple(line.strip().split("\t")) for line in source if line.strip()}


def derive_mrpc_splits(mrpc_dir):
    """Writes train/dev/test.tsv from the raw MRPC files already in mrpc_dir.

    dev = training pairs whose (#1 ID, #2 ID) is listed in dev_ids.tsv, train = the others (both
    keep the raw header); test numbers the raw test pairs 0..n-1 in an `index` column.
    """
    header, train_rows = _read_mrpc_rows(os.path.join(mrpc_dir, MRPC_TRAIN_SOURCE))
    _, test_rows = _read_mrpc_rows(os.path.join(mrpc_dir, MRPC_TEST_SOURCE))
    dev_ids = _read_mrpc_dev_ids(os.path.join(mrpc_dir, MRPC_DEV_IDS_LOCAL_NAME))
    is_dev = [(row[1], row[2]) in dev_ids for row in train_rows]
    splits = {
        "train.tsv": [header] + ["\t".join(row) for row, dev in zip(train_rows, is_dev) if not dev],
        "dev.tsv": [header] + ["\t".join(row) for row, dev in zip(train_rows, is_dev) if dev],
        "test.tsv": [MRPC_TEST_HEADER] + [f"{index}\t" + "\t".join(row[1:])
                                          for index, row in enumerate(test_rows)],
    }
    for file_name, lines in splits.items():
        with open(os.path.join(mrpc_dir, file_name), "w", encoding="utf-8", newline="\n") as out:
            out.write("".join(line + "\n" for line in lines))


def _member_parts(name, url):
    """An archive member's path parts; an absolute path or a `..` fails the whole archive."""
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise GlueDownloadError(f"{url}: unsafe member path {name!r} in the archive")
    return parts


@contextlib.contextmanager
def _tar_members(archive_path, url):
    """Gives an iterator of (member, path parts, open tar); each name is checked before its
    member can be used, and any unreadable part of the archive is a one-line error."""
    def members(tar):
        for member in tar:
            yield member, _member_parts(member.name, url), tar
    try:
        with tarfile.open(archive_path, "r:gz") as tar:  # every public tar here is gzipped
            yield members(tar)
    except TAR_ERRORS as error:
        detail = " ".join(str(error).split()) or type(error).__name__
        raise GlueDownloadError(f"{url} is not a valid tar.gz archive ({detail})") from None


def _write_json(path, value):
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def _write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def _new_folder(staging_dir, name):
    folder = os.path.join(staging_dir, name)
    os.mkdir(folder)
    return folder


def _stage_imdb(staging_dir, url):
    """Extracts only {train,test}/{pos,neg}/*.txt of aclImdb/, with the tar "data" filter."""
    archive_path = os.path.join(staging_dir, "aclImdb.tar.gz")
    fetch(url, archive_path)
    extracted = _new_folder(staging_dir, "extracted")
    counts = {(split, label): 0 for split in IMDB_SPLITS for label in IMDB_LABELS}
    with _tar_members(archive_path, url) as members:
        for member, parts, tar in members:
            if (len(parts) == 4 and parts[0] == "aclImdb" and (parts[1], parts[2]) in counts
                    and parts[3].endswith(".txt") and member.isfile()):
                tar.extract(member, extracted, **TAR_FILTER)
                counts[parts[1], parts[2]] += 1
    empty = [f"{split}/{label}" for (split, label), count in counts.items() if not count]
    if empty:
        raise GlueDownloadError(f"{url} lacks the IMDB review files of aclImdb/{', '.join(empty)}")
    return os.path.join(extracted, "aclImdb")


def _stage_yelp(staging_dir, url):
    archive_path = os.path.join(staging_dir, "yelp.tgz")
    fetch(url, archive_path)
    task_dir = _new_folder(staging_dir, "Yelp-5")
    with _tar_members(archive_path, url) as members:
        for member, parts, tar in members:
            if len(parts) == 2 and parts[1] in YELP_FILES and member.isfile():
                with tar.extractfile(member) as source, \
                        open(os.path.join(task_dir, parts[1]), "wb") as out:
                    shutil.copyfileobj(source, out)
    missing = [name for name in YELP_FILES if not os.path.isfile(os.path.join(task_dir, name))]
    if missing:
        raise GlueDownloadError(f"{url} lacks the Yelp-5 files: {', '.join(missing)}")
    return task_dir


def _stage_newsgroups(staging_dir, url):
    """20news-bydate-{train,test}/<group>/<file> (latin-1) -> {train,test}.jsonl."""
    archive_path = os.path.join(staging_dir, "20news-bydate.tar.gz")
    fetch(url, archive_path)
    rows = {split: [] for split in NEWSGROUP_SPLITS}
    with _tar_members(archive_path, url) as members:
        for member, parts, tar in members:
            if len(parts) == 3 and parts[0] in rows and member.isfile():
                with tar.extractfile(member) as source:
                    rows[parts[0]].append((parts[1], parts[2], source.read().decode("latin-1")))
    empty = [split for split, split_rows in rows.items() if not split_rows]
    if empty:
        raise GlueDownloadError(f"{url} lacks the newsgroup files of {', '.join(empty)}")
    task_dir = _new_folder(staging_dir, "20NG")
    for split, file_name in NEWSGROUP_SPLITS.items():
        _write_jsonl(os.path.join(task_dir, file_name),
                     ({"text": text, "label": group} for group, _, text in sorted(rows[split])))
    return task_dir


def _read_zipped_xml(archive_path, url):
    """The root element of the one .xml file in a zip."""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            names = [name for name in archive.namelist() if name.endswith(".xml")
                     and _member_parts(name, url)[0] not in IGNORED_ARCHIVE_ENTRIES]
            if len(names) != 1:
                raise GlueDownloadError(f"{url}: expected one .xml file in the zip, found "
                                        f"{len(names)}")
            with archive.open(names[0]) as source:
                return ElementTree.parse(source).getroot()
    except zipfile.BadZipFile:
        raise GlueDownloadError(f"{url} is not a valid zip archive") from None
    except ElementTree.ParseError as error:
        raise GlueDownloadError(f"{url}: not valid XML ({error})") from None


def article_text(article):
    """The title, then each paragraph without its XML tags, white space collapsed, one a line."""
    pieces = [article.get("title", ""), article.text or ""]
    for child in article:
        pieces += ["".join(child.itertext()), child.tail or ""]
    return "\n".join(line for line in (" ".join(piece.split()) for piece in pieces) if line)


def split_by_id_hash(ids):
    """Deterministic 80/10/10: ids ordered by SHA-256; the last n//10 test, n//10 before dev."""
    ordered = sorted(ids, key=lambda id_: (hashlib.sha256(id_.encode("utf-8")).hexdigest(), id_))
    tenth = len(ordered) // 10
    train_end = len(ordered) - 2 * tenth
    return {"train.jsonl": sorted(ordered[:train_end]),
            "dev.jsonl": sorted(ordered[train_end:train_end + tenth]),
            "test.jsonl": sorted(ordered[train_end + tenth:])}


def _stage_hyperpartisan(staging_dir, base_url):
    roots = []
    for file_name in (HYPERPARTISAN_ARTICLES, HYPERPARTISAN_GROUND_TRUTH):
        url = _join_url(base_url, file_name)
        fetch(url, os.path.join(staging_dir, file_name))
        roots.append((_read_zipped_xml(os.path.join(staging_dir, file_name), url), url))
    (articles, articles_url), (truth, truth_url) = roots
    labels = {entry.get("id"): entry.get("hyperpartisan") for entry in truth.iter("article")}
    rows = {}
    for article in articles.iter("article"):
        article_id = article.get("id")
        if labels.get(article_id) not in HYPERPARTISAN_LABELS:
            raise GlueDownloadError(f"{truth_url}: article {article_id!r} has no hyperpartisan="
                                    f"{'|'.join(HYPERPARTISAN_LABELS)} entry")
        rows[article_id] = {"id": article_id, "text": article_text(article),
                            "label": labels[article_id]}
    if not rows:
        raise GlueDownloadError(f"{articles_url} holds no <article> elements")
    task_dir = _new_folder(staging_dir, "Hyperpartisan")
    for file_name, ids in split_by_id_hash(list(rows)).items():
        _write_jsonl(os.path.join(task_dir, file_name), (rows[id_] for id_ in ids))
    return task_dir


def _stage_squad(task, staging_dir, base_url):
    task_dir = _new_folder(staging_dir, task)
    for file_name in SQUAD_FILES[task]:
        url = _join_url(base_url, file_name)
        path = os.path.join(task_dir, file_name)
        fetch(url, path)
        try:
            with open(path, encoding="utf-8") as source:
                content = json.load(source)
        except ValueError as error:  # UnicodeDecodeError included
            raise GlueDownloadError(f"{url} is not valid JSON ({error})") from None
        if not isinstance(content, dict) or not isinstance(content.get("data"), list):
            raise GlueDownloadError(f'{url} is not a SQuAD file: no "data" list')
    return task_dir


def _stage_public_set(task, staging_dir, url):
    stagers = {"IMDB": _stage_imdb, "Yelp-5": _stage_yelp, "20NG": _stage_newsgroups,
               "Hyperpartisan": _stage_hyperpartisan}
    if task in SQUAD_FILES:
        return _stage_squad(task, staging_dir, url)
    task_dir = stagers[task](staging_dir, url)
    _write_json(os.path.join(task_dir, "task.json"), TASK_DESCRIPTIONS[task])
    return task_dir


def _stage_task(task, staging_dir, base_url, mrpc_base_url, public_urls):
    """Downloads one task into staging_dir and returns the folder to rename into place."""
    if task in PUBLIC_SETS:
        return _stage_public_set(task, staging_dir, public_urls[task])
    if task == "MRPC":
        task_dir = os.path.join(staging_dir, task)
        os.mkdir(task_dir)
        fetch(_join_url(mrpc_base_url, MRPC_TRAIN_SOURCE), os.path.join(task_dir, MRPC_TRAIN_SOURCE))
        fetch(_join_url(mrpc_base_url, MRPC_TEST_SOURCE), os.path.join(task_dir, MRPC_TEST_SOURCE))
        fetch(_join_url(base_url, MRPC_DEV_IDS_REMOTE_NAME),
              os.path.join(task_dir, MRPC_DEV_IDS_LOCAL_NAME))
        derive_mrpc_splits(task_dir)
        return task_dir
    if task == "AX":
        task_dir = os.path.join(staging_dir, task)
        os.mkdir(task_dir)
        fetch(_join_url(base_url, AX_REMOTE_NAME), os.path.join(task_dir, AX_LOCAL_NAME))
        return task_dir
    url = _join_url(base_url, TASK_ARCHIVES[task])
    archive_path = os.path.join(staging_dir, TASK_ARCHIVES[task])
    fetch(url, archive_path)
    task_dir = _extract_archive(archive_path, url, os.path.join(staging_dir, "extracted"))
    _check_expected_files(task, task_dir, url)
    return task_dir


def download_task(task, data_dir, base_url=DEFAULT_BASE_URL, mrpc_base_url=DEFAULT_MRPC_BASE_URL,
                  force=False, public_urls=None):
    """Fetches one task into <data_dir>/<TASK>/ and returns that path; skips a present task.

    public_urls maps a public set's name to the URL (or base URL) that replaces its default."""
    task = resolve_task_name(task)
    public_urls = {**DEFAULT_PUBLIC_URLS, **(public_urls or {})}
    target = os.path.join(data_dir, task)
    if os.path.exists(target) and not force:
        print(f"{task}: already present at {target}, skipping (use --force to download again)")
        return target
    os.makedirs(data_dir, exist_ok=True)
    print(f"{task}: downloading ...", flush=True)
    staging_dir = tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{task}-", dir=data_dir)
    try:
        task_dir = _stage_task(task, staging_dir, base_url, mrpc_base_url, public_urls)
        if os.path.exists(target):
            os.rename(target, os.path.join(staging_dir, "replaced"))
        os.rename(task_dir, target)
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)
    print(f"{task}: done -> {target}")
    return target


def check_data_dir(data_dir):
    """Refuses a data_dir that cannot hold task folders before anything is downloaded."""
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise ValueError(f"--data_dir={data_dir} is a file; expected a folder for the tasks")
    try:
        os.makedirs(data_dir, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=STAGING_PREFIX, dir=data_dir):
            pass
    except OSError as error:
        raise ValueError(f"--data_dir={data_dir}: cannot write there "
                         f"({error.strerror or error})") from None


def fail(message, status):
    """One line on stderr, as every command of the project reports bad input."""
    print(f"{PROGRAM}: error: {message}", file=sys.stderr, flush=True)
    return status


class ArgumentParser(argparse.ArgumentParser):
    """A bad command line is one line and exit 1, and a flag only its whole name (``--task``
    is not ``--tasks``), as bert.cli's parser, which this standard-library script cannot use."""

    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, **kwargs)

    def error(self, message):
        self.exit(EXIT_FAILURE, f"{PROGRAM}: error: {message} (see --help)\n")


def build_parser():
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="all",
                        help=f"comma-separated names and groups: GLUE's {', '.join(TASKS)}; the "
                        f"public sets {', '.join(PUBLIC_SETS)}; 'all' (GLUE only, the default), "
                        + ", ".join(f"'{group}' ({', '.join(names)})"
                                    for group, names in TASK_GROUPS.items() if group != "public")
                        + ", 'public' (all public sets)")
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR,
                        help="folder that receives one sub-folder per task")
    parser.add_argument("--base_url", default=os.environ.get(BASE_URL_ENV, DEFAULT_BASE_URL),
                        help=f"where the GLUE task files live (env {BASE_URL_ENV})")
    parser.add_argument("--mrpc_base_url",
                        default=os.environ.get(MRPC_BASE_URL_ENV, DEFAULT_MRPC_BASE_URL),
                        help=f"where the msr_paraphrase_*.txt files live (env {MRPC_BASE_URL_ENV})")
    parser.add_argument("--imdb_url", metavar="URL", default=DEFAULT_PUBLIC_URLS["IMDB"],
                        help="the IMDB aclImdb_v1.tar.gz")
    parser.add_argument("--yelp5_url", metavar="URL", default=DEFAULT_PUBLIC_URLS["Yelp-5"],
                        help="the Yelp-5 yelp_review_full_csv.tgz")
    parser.add_argument("--20ng_url", dest="ng20_url", metavar="URL",
                        default=DEFAULT_PUBLIC_URLS["20NG"],
                        help="the 20NG 20news-bydate.tar.gz")
    parser.add_argument("--hyperpartisan_base_url", metavar="URL",
                        default=DEFAULT_PUBLIC_URLS["Hyperpartisan"],
                        help=f"where {HYPERPARTISAN_ARTICLES} and "
                        f"{HYPERPARTISAN_GROUND_TRUTH} live")
    parser.add_argument("--squad_base_url", metavar="URL", default=SQUAD_BASE_URL,
                        help="where the SQuAD {train,dev}-v{1.1,2.0}.json files live")
    parser.add_argument("--force", action="store_true", help="download tasks that are already present")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        tasks = parse_task_list(args.tasks)
        check_data_dir(args.data_dir)
    except ValueError as error:
        return fail(error, EXIT_FAILURE)
    public_urls = {"IMDB": args.imdb_url, "Yelp-5": args.yelp5_url, "20NG": args.ng20_url,
                   "Hyperpartisan": args.hyperpartisan_base_url,
                   "SQuAD-v1.1": args.squad_base_url, "SQuAD-v2.0": args.squad_base_url}
    for task in tasks:
        try:
            download_task(task, args.data_dir, args.base_url, args.mrpc_base_url, force=args.force,
                          public_urls=public_urls)
        except (GlueDownloadError, OSError) as error:
            return fail(f"{task}: {error}", EXIT_FAILURE)
    return 0


if __name__ == "__main__":
    sys.exit(main())

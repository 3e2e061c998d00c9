"""Downloads the GLUE tasks into <data_dir>/<TASK>/ in the layout bert/glue.py reads.

    python datasets/download_glue.py --tasks all --data_dir datasets
    python datasets/download_glue.py --tasks CoLA,SST-2 --data_dir datasets --base_url http://host/glue

Standard library only, so it runs before the project's environment exists. Every task is
fetched and unpacked in a hidden staging folder inside data_dir and renamed into place at the
end, so an interrupted run never leaves a half-written task folder; present tasks are skipped
unless --force is given.

MRPC is not redistributed by GLUE as a zip: its train/dev/test.tsv are derived here from the
Microsoft msr_paraphrase_{train,test}.txt files plus GLUE's list of dev-set id pairs.
"""
import argparse
import http.client
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile

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


class GlueDownloadError(RuntimeError):
    """A task could not be fetched or its files do not have the expected content."""


def resolve_task_name(name):
    """Accepts any capitalisation of a GLUE task name (and a few common aliases)."""
    by_lower = {task.lower(): task for task in TASKS}
    key = name.strip().lower()
    if key in by_lower:
        return by_lower[key]
    if key in TASK_ALIASES:
        return TASK_ALIASES[key]
    raise ValueError(f"unknown GLUE task {name!r}; valid tasks: {', '.join(TASKS)} (or 'all')")


def parse_task_list(tasks_flag):
    if tasks_flag.strip().lower() == "all":
        return list(TASKS)
    names = [resolve_task_name(name) for name in tasks_flag.split(",") if name.strip()]
    if not names:
        raise ValueError(f"no tasks given; valid tasks: {', '.join(TASKS)} (or 'all')")
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


def _stage_task(task, staging_dir, base_url, mrpc_base_url):
    """Downloads one task into staging_dir and returns the folder to rename into place."""
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
                  force=False):
    """Fetches one task into <data_dir>/<TASK>/ and returns that path; skips a present task."""
    task = resolve_task_name(task)
    target = os.path.join(data_dir, task)
    if os.path.exists(target) and not force:
        print(f"{task}: already present at {target}, skipping (use --force to download again)")
        return target
    os.makedirs(data_dir, exist_ok=True)
    print(f"{task}: downloading ...", flush=True)
    staging_dir = tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{task}-", dir=data_dir)
    try:
        task_dir = _stage_task(task, staging_dir, base_url, mrpc_base_url)
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
                        help=f"'all' or a comma-separated list of: {', '.join(TASKS)}")
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR,
                        help="folder that receives one sub-folder per task")
    parser.add_argument("--base_url", default=os.environ.get(BASE_URL_ENV, DEFAULT_BASE_URL),
                        help=f"where the GLUE task files live (env {BASE_URL_ENV})")
    parser.add_argument("--mrpc_base_url",
                        default=os.environ.get(MRPC_BASE_URL_ENV, DEFAULT_MRPC_BASE_URL),
                        help=f"where the msr_paraphrase_*.txt files live (env {MRPC_BASE_URL_ENV})")
    parser.add_argument("--force", action="store_true", help="download tasks that are already present")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        tasks = parse_task_list(args.tasks)
        check_data_dir(args.data_dir)
    except ValueError as error:
        return fail(error, EXIT_FAILURE)
    for task in tasks:
        try:
            download_task(task, args.data_dir, args.base_url, args.mrpc_base_url, force=args.force)
        except (GlueDownloadError, OSError) as error:
            return fail(f"{task}: {error}", EXIT_FAILURE)
    return 0


if __name__ == "__main__":
    sys.exit(main())

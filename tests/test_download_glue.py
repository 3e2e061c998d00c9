"""The GLUE downloader against a local HTTP server serving small archives in the GLUE layout."""
import functools
import http.server
import shutil
import socket
import threading
import zipfile

import pytest

from conftest import load_downloader

from bert import glue

SERVER_STOP_TIMEOUT_SECONDS = 5
SERVER_POLL_SECONDS = 0.05  # how soon shutdown() is noticed




download_glue = load_downloader()

ZIP_TASK_FILES = {  # task: (archive name, folder inside the archive, files)
    "CoLA": ("CoLA.zip", "CoLA", {
        "train.tsv": "gj04\t1\t\tIt rained.\n", "dev.tsv": "gj04\t0\t*\tRained it.\n",
        "test.tsv": "index\tsentence\n0\tIt snowed.\n", "original/raw/in_domain_train.tsv": "x\n"}),
    "SST-2": ("SST-2.zip", "SST-2", {
        "train.tsv": "sentence\tlabel\ngood \t1\n", "dev.tsv": "sentence\tlabel\nbad \t0\n",
        "test.tsv": "index\tsentence\n0\tfine .\n"}),
    "QQP": ("QQP-clean.zip", "QQP", {
        "train.tsv": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t1\t2\tA?\tB?\t0\n",
        "dev.tsv": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n2\t3\t4\tC?\tD?\t1\n",
        "test.tsv": "id\tquestion1\tquestion2\n0\tE?\tF?\n"}),
    "STS-B": ("STS-B.zip", "STS-B", {"train.tsv": "t\n", "dev.tsv": "d\n", "test.tsv": "e\n"}),
    "MNLI": ("MNLI.zip", "MNLI", {
        "train.tsv": "t\n", "dev_matched.tsv": "dm\n", "dev_mismatched.tsv": "dmm\n",
        "test_matched.tsv": "tm\n", "test_mismatched.tsv": "tmm\n"}),
    "QNLI": ("QNLIv2.zip", "QNLI", {
        "train.tsv": "index\tquestion\tsentence\tlabel\n0\tWhen?\tNow.\tentailment\n",
        "dev.tsv": "index\tquestion\tsentence\tlabel\n0\tWhy?\tNo.\tnot_entailment\n",
        "test.tsv": "index\tquestion\tsentence\n0\tWho?\tMe.\n"}),
    "RTE": ("RTE.zip", "RTE", {"train.tsv": "t\n", "dev.tsv": "d\n", "test.tsv": "e\n"}),
    "WNLI": ("WNLI.zip", "WNLI", {"train.tsv": "t\n", "dev.tsv": "d\n", "test.tsv": "e\n"}),
}
AX_CONTENT = "index\tsentence1\tsentence2\n0\tThe cat sat.\tThe cat did not sit.\n"

MSR_HEADER = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"
MSR_TRAIN = "\r\n".join([  # CRLF line ends must not leak into the derived files
    MSR_HEADER,
    '1\t702876\t702977\tAmrozi accused his brother, "the witness".\tReferring to him as "the witness".',
    "0\t2108705\t2108831\tYucaipa owned Dominick's.\tYucaipa bought Dominick's.",
    "1\t1330381\t1330521\tThey had published an advertisement.\tOn June 10, they advertised.",
    "0\t3344667\t3344648\tAround 0335 GMT, Tab shares were up.\tTab shares jumped.",
]) + "\r\n"
MSR_TEST = "\n".join([
    MSR_HEADER,
    "1\t1089874\t1089925\tPCCW's chief operating officer.\tCurrent Chief Operating Officer.",
    "0\t3019446\t3019327\tThe world's two largest automakers.\tDomestic sales at both GM.",
]) + "\n"
MRPC_DEV_IDS = "2108705\t2108831\n3344667\t3344648\n"


def write_zip(path, inner_folder, files):
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in files.items():
            archive.writestr(f"{inner_folder}/{name}", content)


def build_glue_site(folder):
    """Writes every remote file the downloader asks for, in the names GLUE serves them under."""
    folder.mkdir(exist_ok=True)
    for archive_name, inner_folder, files in ZIP_TASK_FILES.values():
        write_zip(folder / archive_name, inner_folder, files)
    (folder / "AX.tsv").write_text(AX_CONTENT, encoding="utf-8")
    (folder / "mrpc_dev_ids.tsv").write_text(MRPC_DEV_IDS, encoding="utf-8")
    (folder / "msr_paraphrase_train.txt").write_bytes(MSR_TRAIN.encode("utf-8"))
    (folder / "msr_paraphrase_test.txt").write_text(MSR_TEST, encoding="utf-8")
    return folder


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(autouse=True)
def bypass_proxies(monkeypatch):
    """A proxy configured on the machine must not see requests meant for 127.0.0.1."""
    for variable in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(variable, "127.0.0.1")


@pytest.fixture
def serve():
    """Returns a function that serves a folder over HTTP on 127.0.0.1 and gives its base URL."""
    servers = []

    def start(folder):
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
        thread = threading.Thread(target=server.serve_forever,
                                  kwargs={"poll_interval": SERVER_POLL_SECONDS}, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(SERVER_STOP_TIMEOUT_SECONDS)


def closed_port_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_all_tasks_land_in_the_standard_layout(tmp_path, serve, capsys):
    base_url = serve(build_glue_site(tmp_path / "site"))
    data_dir = tmp_path / "glue"
    assert download_glue.main(["--tasks", "all", "--data_dir", str(data_dir),
                               "--base_url", base_url, "--mrpc_base_url", base_url]) == 0

    for task, (_, _, files) in ZIP_TASK_FILES.items():
        for name, content in files.items():
            assert (data_dir / task / name).read_text(encoding="utf-8") == content
    assert (data_dir / "AX" / "diagnostic.tsv").read_text(encoding="utf-8") == AX_CONTENT
    assert {p.name for p in (data_dir / "MRPC").iterdir()} >= {"train.tsv", "dev.tsv", "test.tsv"}
    assert sorted(p.name for p in data_dir.iterdir()) == sorted(download_glue.TASKS)  # no staging left
    output = capsys.readouterr().out
    assert all(f"{task}: done" in output for task in download_glue.TASKS)

    # The downloaded folders are what the processors read.
    assert glue.get_processor("cola").get_train_examples(data_dir / "CoLA")[0].text_a == "It rained."
    assert glue.get_processor("qnli").get_dev_examples(data_dir / "QNLI")[0].label == "not_entailment"
    assert glue.get_processor("ax").get_test_examples(data_dir / "AX")[0].test_index == "0"


def test_mrpc_is_derived_from_the_msr_files(tmp_path, serve):
    base_url = serve(build_glue_site(tmp_path / "site"))
    mrpc_dir = tmp_path / "glue" / "MRPC"
    download_glue.download_task("MRPC", str(tmp_path / "glue"), base_url, base_url)

    header = MSR_HEADER + "\n"
    assert (mrpc_dir / "train.tsv").read_text(encoding="utf-8") == header + (
        '1\t702876\t702977\tAmrozi accused his brother, "the witness".\tReferring to him as "the witness".\n'
        "1\t1330381\t1330521\tThey had published an advertisement.\tOn June 10, they advertised.\n")
    assert (mrpc_dir / "dev.tsv").read_text(encoding="utf-8") == header + (
        "0\t2108705\t2108831\tYucaipa owned Dominick's.\tYucaipa bought Dominick's.\n"
        "0\t3344667\t3344648\tAround 0335 GMT, Tab shares were up.\tTab shares jumped.\n")
    assert (mrpc_dir / "test.tsv").read_text(encoding="utf-8") == (
        "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        "0\t1089874\t1089925\tPCCW's chief operating officer.\tCurrent Chief Operating Officer.\n"
        "1\t3019446\t3019327\tThe world's two largest automakers.\tDomestic sales at both GM.\n")
    assert (mrpc_dir / "dev_ids.tsv").read_text(encoding="utf-8") == MRPC_DEV_IDS

    processor = glue.get_processor("mrpc")
    assert [e.label for e in processor.get_dev_examples(mrpc_dir)] == ["0", "0"]
    assert [e.test_index for e in processor.get_test_examples(mrpc_dir)] == ["0", "1"]


def test_mrpc_derivation_reproduces_the_real_glue_files(tmp_path, serve, glue_dir):
    site = tmp_path / "site"
    site.mkdir()
    for name in ("msr_paraphrase_train.txt", "msr_paraphrase_test.txt"):
        shutil.copy(glue_dir / "MRPC" / name, site / name)
    shutil.copy(glue_dir / "MRPC" / "dev_ids.tsv", site / "mrpc_dev_ids.tsv")
    base_url = serve(site)
    mrpc_dir = download_glue.download_task("MRPC", str(tmp_path / "glue"), base_url, base_url)
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        assert (tmp_path / "glue" / "MRPC" / name).read_bytes() == (glue_dir / "MRPC" / name).read_bytes()
    assert mrpc_dir == str(tmp_path / "glue" / "MRPC")


def test_present_task_is_skipped_unless_forced(tmp_path, serve, capsys):
    site = build_glue_site(tmp_path / "site")
    base_url = serve(site)
    data_dir = str(tmp_path / "glue")
    args = ["--tasks", "rte", "--data_dir", data_dir, "--base_url", base_url]
    assert download_glue.main(args) == 0
    write_zip(site / "RTE.zip", "RTE", {"train.tsv": "new\n", "dev.tsv": "d\n", "test.tsv": "e\n"})

    assert download_glue.main(args) == 0
    assert "RTE: already present" in capsys.readouterr().out
    assert (tmp_path / "glue" / "RTE" / "train.tsv").read_text() == "t\n"

    assert download_glue.main(args + ["--force"]) == 0
    assert (tmp_path / "glue" / "RTE" / "train.tsv").read_text() == "new\n"
    assert [p.name for p in (tmp_path / "glue").iterdir()] == ["RTE"]


def test_base_url_comes_from_the_environment(tmp_path, serve, monkeypatch):
    monkeypatch.setenv(download_glue.BASE_URL_ENV, serve(build_glue_site(tmp_path / "site")))
    assert download_glue.main(["--tasks", "WNLI", "--data_dir", str(tmp_path / "glue")]) == 0
    assert (tmp_path / "glue" / "WNLI" / "dev.tsv").read_text() == "d\n"


def test_unreachable_host_gives_one_clear_line_and_no_partial_folder(tmp_path, capsys):
    base_url = closed_port_url()
    data_dir = tmp_path / "glue"
    assert download_glue.main(["--tasks", "CoLA", "--data_dir", str(data_dir),
                               "--base_url", base_url]) == download_glue.EXIT_FAILURE
    error = capsys.readouterr().err
    assert f"{base_url}/CoLA.zip" in error and "network is unreachable" in error
    assert error.count("\n") == 1
    assert list(data_dir.iterdir()) == []


def test_missing_remote_file_and_wrong_archive_leave_nothing_behind(tmp_path, serve):
    site = tmp_path / "site"
    site.mkdir()
    write_zip(site / "RTE.zip", "RTE", {"train.tsv": "t\n"})
    base_url = serve(site)
    data_dir = tmp_path / "glue"
    with pytest.raises(download_glue.GlueDownloadError, match=r"/SST-2\.zip: HTTP 404"):
        download_glue.download_task("SST-2", str(data_dir), base_url, base_url)
    with pytest.raises(download_glue.GlueDownloadError, match="lacks the RTE files: dev.tsv, test.tsv"):
        download_glue.download_task("RTE", str(data_dir), base_url, base_url)
    (site / "WNLI.zip").write_text("not a zip")
    with pytest.raises(download_glue.GlueDownloadError, match="not a valid zip"):
        download_glue.download_task("WNLI", str(data_dir), base_url, base_url)
    assert list(data_dir.iterdir()) == []


def test_unknown_task_lists_valid_ones(tmp_path, capsys):
    assert download_glue.main(["--tasks", "CoLA,SQuAD", "--data_dir", str(tmp_path)]) == \
        download_glue.EXIT_FAILURE
    error = capsys.readouterr().err
    assert "'SQuAD'" in error and "CoLA, SST-2, MRPC" in error
    assert list(tmp_path.iterdir()) == []


def test_task_names_are_case_insensitive():
    assert download_glue.parse_task_list("cola, sst2,STS-B,diagnostic,CoLA") == ["CoLA", "SST-2", "STS-B", "AX"]

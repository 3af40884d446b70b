"""Download the real raw datasets (the files of ``../shared/data``) from their pinned GitHub URLs.

    python -m unirec_lab.data.download --dest DIR [dataset ...]      # default: every dataset
    python -m unirec_lab.data.download --list

Each file is fetched with urllib, its size and sha256 checked against the registry below (a copy of the
``MANIFEST.tsv`` files: pinned commits, so the bytes never change), and written atomically (temp file in the
same folder, then rename): an interrupted download leaves no half-written file. Files already present with the
right sha256 are skipped. Two Ciao files are only published inside ``ciao.zip``; the zip is fetched once and
the member extracted. Each dataset folder also gets its ``MANIFEST.tsv``, which the loaders check.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from unirec_lab.data.scenarios.raw import MANIFEST, RawDataError, default_raw_dir, sha256_file
from unirec_lab.utils.atomic import current_umask


class DownloadError(RawDataError):
    """A download failed or its bytes do not match the registry."""


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int
    sha256: str
    source: str  # the MANIFEST.tsv "source" column (a URL, or a note for zip members)
    url: str = ""  # what to fetch; defaults to ``source``
    member: str = ""  # for a zip archive: the member's base name

    @property
    def fetch_url(self) -> str:
        return self.url or self.source


_GH = "https://raw.githubusercontent.com"
_S3REC = f"{_GH}/aHuiWang/CIKM2020-S3Rec/49a890dcb516c9ed3126564495234ea74d5cd566/data"
_HIN = f"{_GH}/librahu/HIN-Datasets-for-Recommendation-and-Network-Embedding/cc05c484b628b08237f0a876fcebf99d736ccbea"
_AKT = f"{_GH}/arghosh/AKT/01b7e8d7d7c862cabc9467108e3e7f2555653a88/data"
_FAIR = f"{_GH}/yushundong/Graph-Mining-Fairness-Data"
_CIAO_ZIP = f"{_FAIR}/86a17feb5bcfe325c662284d7ac6450cea322755/ciao/ciao.zip"
_MIND = f"{_GH}/Farabi667/AI-Term-Project/c83c37b18c1820abbd8ba6955912ac1e61e62fa1/MINDsmall_train"
_DKN = f"{_GH}/hwwang55/DKN/90a188021a82ddaadffc44f6d87e1e72b1c3db9a"

R = RemoteFile
REGISTRY: dict[str, tuple[str, tuple[RemoteFile, ...]]] = {
    "amazon_s3rec": ("ecommerce/amazon_s3rec", (
        R("Beauty.txt", 1090094, "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
          f"{_S3REC}/Beauty.txt"),
        R("Beauty_item2attributes.json", 305674, "129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4",
          f"{_S3REC}/Beauty_item2attributes.json"),
        R("Sports_and_Outdoors.txt", 1707483, "2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2",
          f"{_S3REC}/Sports_and_Outdoors.txt"),
        R("Sports_and_Outdoors_item2attributes.json", 653780,
          "7fb10733ac4f1811384a52144cdefa7fcc7536fa80a7232c5da9bd789155c34b",
          f"{_S3REC}/Sports_and_Outdoors_item2attributes.json"),
        R("Toys_and_Games.txt", 922166, "176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f",
          f"{_S3REC}/Toys_and_Games.txt"),
        R("Toys_and_Games_item2attributes.json", 327536,
          "d371acd25101eedac04afc727626464b7acec770c4eda708705d51eb76eb1ad0",
          f"{_S3REC}/Toys_and_Games_item2attributes.json"),
    )),
    "amazon_hin": ("ecommerce/amazon_hin", (
        R("item_brand.dat", 19602, "65f4eaddff343a365ad474a6841bbaf541af1b2d96081c4adaeeeb8a7a8a313b",
          f"{_HIN}/Amazon/item_brand.dat"),
        R("item_category.dat", 36352, "17b9158f777fbb0b8b035a9b675c2f7d2e9f7ad81f34919d3e6db4289c9dc6bf",
          f"{_HIN}/Amazon/item_category.dat"),
        R("item_view.dat", 52260, "42b1aec0a0eb9d71a265efb491dd951b523723637bb18f80f87c72d4fa6819da",
          f"{_HIN}/Amazon/item_view.dat"),
        R("user_item.dat", 4188782, "d14fcc5b04f0d701d326149bc4f18d471156f189ff1f4d0fefa14511c4cb42c8",
          f"{_HIN}/Amazon/user_item.dat"),
    )),
    "ciao": ("social/ciao", (
        R("README_tang_ciao.txt", 1856, "c531e7f112e841442cb47dcf67449f2af8059d6b96d96defeaa7e11b5baf75cb",
          "readme.txt inside the same ciao.zip", url=_CIAO_ZIP, member="readme.txt"),
        R("catalog_ciao.txt", 426, "fc29d8cdbbb210ac5ce789537dc83481e694b5eb9f2c3a69c4948a182dd03783",
          f"{_FAIR}/86a17feb5bcfe325c662284d7ac6450cea322755/ciao/catalog_ciao.txt"),
        R("rating_with_timestamp.mat", 1529576, "488e9aa5f60e6a52a972795b6402f922fc0d9d273152f4d124a5c5bdefb86a71",
          f"{_FAIR}/2bd4b5cd9a09d87e93c8efc490773cbfa0a7984e/dataset/Epinion%26Ciao/ciao/rating_with_timestamp.mat"),
        R("trustnetwork.mat", 204371, "0a8963ed22e6b534ce8d14e478f54ce0af6f5a3440a67ed5a35e62486580ce3a",
          f"inside {_CIAO_ZIP} (original release: https://www.cse.msu.edu/~tangjili/datasetcode/ciao.zip)",
          url=_CIAO_ZIP, member="trustnetwork.mat"),
    )),
    "yelp_hin": ("social/yelp_hin", (
        R("business_category.dat", 439981, "d3c1499e406c0a842b3c08c478ffe7bf26a8758b630e0b056d0f4bcf18c01a5b",
          f"{_HIN}/Yelp/business_category.dat"),
        R("business_city.dat", 145353, "09c009dfa16709aff52de4831b9cb30f45a16dcfce1db06858d54af6ef5f7d1e",
          f"{_HIN}/Yelp/business_city.dat"),
        R("user_business.dat", 2490385, "d57853e95c3f49f0060f31ee9365ab3fffe1010999c76863c3cd9628b91e994d",
          f"{_HIN}/Yelp/user_business.dat"),
        R("user_compliment.dat", 728264, "e7f5c15155bf0843e3bdf9fb4743bb3ebf76826b4108e9e194fd637e0bb05ed6",
          f"{_HIN}/Yelp/user_compliment.dat"),
        R("user_user.dat", 2015188, "d360f88f66b7ba9a1fd460b8c414dba1bec6489773283083a614a77925bcaaed",
          f"{_HIN}/Yelp/user_user.dat"),
    )),
    "assist2009_pid": ("education/assist2009_pid", (
        R("assist2009_pid_test1.csv", 627529, "7a1cb2bc8045dbe1016253fdd1dc831b26580638e15a7b7b99c5d7c73d3c3915",
          f"{_AKT}/assist2009_pid/assist2009_pid_test1.csv"),
        R("assist2009_pid_train1.csv", 2088218, "2b373459f4a55e305b7cc5aea3106398a1383c3356de5eaf8b249cd010ae01b7",
          f"{_AKT}/assist2009_pid/assist2009_pid_train1.csv"),
        R("assist2009_pid_valid1.csv", 630410, "547c17ad179e850edc7a8a8a1e74a2e371e5eaeafcb2c375b7ae53248e733db0",
          f"{_AKT}/assist2009_pid/assist2009_pid_valid1.csv"),
        R("problems.json", 262435, "e79a0a91549238058f2e6f3ddf393dd08476285275f26f35291d15f5aa3563e2",
          f"{_AKT}/assist2009_pid/problems.json"),
        R("skill.json", 3362, "f3a3e5e9d719c264b28a8bcedf5a7debfbf51f3c6c78db206175f0c443de6ccd",
          f"{_AKT}/assist2009_pid/skill.json"),
        R("user.json", 61155, "fbe90e77b63882f125f6ce442e600e111dfbaa7e49b8d6213c96c52d2169f168",
          f"{_AKT}/assist2009_pid/user.json"),
    )),
    "assist2015": ("education/assist2015", (
        R("assist2015_valid1.csv", 731542, "042debf8136c6b9ff0f61dc44941bf4e804fdf35cf0ecb7bab59595a32be77dd",
          f"{_AKT}/assist2015/assist2015_valid1.csv"),
        R("assist2015_valid2.csv", 708188, "df56f8dbd0f9315089006defdc6435a6ea045f4cf46591e56b4d058af63426e8",
          f"{_AKT}/assist2015/assist2015_valid2.csv"),
        R("assist2015_valid3.csv", 692506, "80cdfcfc11996ad88c37b335b4257ade2068545cea85629d48451c6aa03a3d42",
          f"{_AKT}/assist2015/assist2015_valid3.csv"),
        R("assist2015_valid4.csv", 717818, "6fa99680187ccdc8b220427e79eea3ab5bb9928e78d0db4987571c913e37323d",
          f"{_AKT}/assist2015/assist2015_valid4.csv"),
        R("assist2015_valid5.csv", 708671, "7d3155b38d5753a111412467c7f7e00d66b2f56979393c948612e43a7b12ce49",
          f"{_AKT}/assist2015/assist2015_valid5.csv"),
        R("skill.json", 1237, "b9b901c5553af57e236b8491fc6c2757c97b9a77e1daf855fff961bf63fef076",
          f"{_AKT}/assist2015/skill.json"),
        R("user.json", 326135, "affae7ff4d9f0899b38e1dc9e17c87ebf516a6ae928d9f40aa0655fc9d4e3f11",
          f"{_AKT}/assist2015/user.json"),
    )),
    "assist2017_pid": ("education/assist2017_pid", (
        R("assist2017_pid_valid1.csv", 1737844, "c40e2eb18e3079cedc92af1a0a9eeceebd3a5d43fc9da4df8f16009e96197857",
          f"{_AKT}/assist2017_pid/assist2017_pid_valid1.csv"),
        R("assist2017_pid_valid2.csv", 1633238, "504ce41c75545f2f43ea1a6c228ef032596a0d8bd3819fa013aab4c558d2c2a4",
          f"{_AKT}/assist2017_pid/assist2017_pid_valid2.csv"),
        R("assist2017_pid_valid3.csv", 1665580, "fe758a0e545eb51594e5ee8cee01ae1898d7f3a8ef5f87c86df4bacfa6ea8800",
          f"{_AKT}/assist2017_pid/assist2017_pid_valid3.csv"),
        R("assist2017_pid_valid4.csv", 1652234, "7659d973bf2517105070b573444d39e7899323fee28cf93bf3c921363eaedc5c",
          f"{_AKT}/assist2017_pid/assist2017_pid_valid4.csv"),
        R("assist2017_pid_valid5.csv", 1842930, "32d1580467edb4b87ec9773fada2e3439c820c0640d5e618a80f49b2a9bcd582",
          f"{_AKT}/assist2017_pid/assist2017_pid_valid5.csv"),
        R("problems.json", 42650, "29a035b367448bb807766924c6ae87c714dcccd1b4cc2896b4aee8c202d84943",
          f"{_AKT}/assist2017_pid/problems.json"),
        R("skill.json", 2635, "100e4c47b82a33582343998c5e245156ea2ab04ed4209aa34a6b2cb459be1ff1",
          f"{_AKT}/assist2017_pid/skill.json"),
        R("user.json", 22567, "3b4749971d833adf472698359a869544bed31bdb31aba3a5d41fe7d27db4f5ad",
          f"{_AKT}/assist2017_pid/user.json"),
    )),
    "statics2011": ("education/statics2011", (
        R("statics.csv", 1131524, "cd8b6ed640bb2e3dfd63ec681e17ec2262fb7284cea8735d1cfc2f317d17bab1",
          f"{_AKT}/statics/statics.csv"),
    )),
    "mind_small_subset": ("news/mind_small_subset", (
        R("behaviors.tsv", 2939791, "2a101e15ce197ba488abffb91d337bd069823011838de14dacc46a26c91484a5",
          f"{_MIND}/behaviors.tsv"),
        R("news.tsv", 1613302, "317a322c7b70518fb91ca08d937d1ec77a8b12fb9e28db5fc90374af16b354bf",
          f"{_MIND}/news.tsv"),
    )),
    "bing_dkn_sample": ("news/bing_dkn_sample", (
        R("LICENSE", 1069, "fecca541be509e0eb9b4855960da0cf232d02fa21f77f614f7ccae436440cbd9", f"{_DKN}/LICENSE"),
        R("raw_test.txt", 39532, "5698c122c7643b0f5937e109fb2fc9a7716147fb3e15ab10c70eb4f76f2eefc9",
          f"{_DKN}/data/news/raw_test.txt"),
        R("raw_train.txt", 884718, "9a699aac3bc2e95437ea943f36771764e45dc2b16ff86db6aee54e38010fd839",
          f"{_DKN}/data/news/raw_train.txt"),
    )),
}
del R

Opener = Callable[..., io.BufferedIOBase]


def registry_manifest(dataset: str) -> dict[str, tuple[int, str]]:
    """``{file: (bytes, sha256)}`` of a dataset, as a MANIFEST.tsv would give it."""
    if dataset not in REGISTRY:
        raise RawDataError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(REGISTRY))}")
    return {f.name: (f.size, f.sha256) for f in REGISTRY[dataset][1]}


def manifest_text(dataset: str) -> str:
    rows = ["file\tbytes\tsha256\tsource"]
    rows += [f"{f.name}\t{f.size}\t{f.sha256}\t{f.source}" for f in sorted(REGISTRY[dataset][1], key=lambda f: f.name)]
    return "\n".join(rows) + "\n"


def verify_sha256(path: Path | str, expected: str, size: int | None = None) -> None:
    """Raise :class:`DownloadError` naming the file when its size or sha256 differs from the expected one."""
    path = Path(path)
    if not path.is_file():
        raise DownloadError(f"{path}: file missing")
    if size is not None and path.stat().st_size != size:
        raise DownloadError(f"{path}: {path.stat().st_size} bytes, expected {size}")
    got = sha256_file(path)
    if got != expected.lower():
        raise DownloadError(f"{path}: sha256 {got} does not match the expected {expected.lower()}")


def _write_atomic(dest: Path, data_iter, expected: RemoteFile, origin: str) -> None:
    """Stream chunks into a temp file next to ``dest``, check size + sha256, then rename into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    h, n = hashlib.sha256(), 0
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp creates 0600; raw data is shared like any file
        with os.fdopen(fd, "wb") as f:
            for chunk in data_iter:
                h.update(chunk)
                n += len(chunk)
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        if n != expected.size or h.hexdigest() != expected.sha256:
            raise DownloadError(f"{origin} -> {dest.name}: got {n} bytes with sha256 {h.hexdigest()[:16]}..., "
                                f"expected {expected.size} bytes with sha256 {expected.sha256[:16]}...")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _chunks(resp, size: int = 1 << 20):
    while block := resp.read(size):
        yield block


def _open(url: str, timeout: float, opener: Opener):
    try:
        return opener(urllib.request.Request(url, headers={"User-Agent": "unirec_lab-download"}), timeout=timeout)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DownloadError(f"could not fetch {url}: {e}") from None


def fetch_file(f: RemoteFile, dest: Path, timeout: float = 60.0, opener: Opener = urllib.request.urlopen,
               zip_cache: dict[str, bytes] | None = None) -> None:
    """Fetch one registry file to ``dest`` (atomic, verified)."""
    if not f.member:
        with _open(f.fetch_url, timeout, opener) as resp:
            _write_atomic(dest, _chunks(resp), f, f.fetch_url)
        return
    cache = zip_cache if zip_cache is not None else {}
    if f.fetch_url not in cache:
        with _open(f.fetch_url, timeout, opener) as resp:
            cache[f.fetch_url] = resp.read()
    try:
        zf = zipfile.ZipFile(io.BytesIO(cache[f.fetch_url]))
    except zipfile.BadZipFile:
        raise DownloadError(f"{f.fetch_url}: not a zip archive") from None
    names = [n for n in zf.namelist() if n.rsplit("/", 1)[-1].lower() == f.member.lower()]
    if not names:
        raise DownloadError(f"{f.fetch_url}: no member named {f.member!r} in the archive")
    _write_atomic(dest, iter([zf.read(names[0])]), f, f"{f.fetch_url}:{names[0]}")


def download(datasets: list[str], dest: Path | str, timeout: float = 60.0, opener: Opener = urllib.request.urlopen,
             log=print) -> dict[str, list[str]]:
    """Download ``datasets`` into ``dest/<domain>/<dataset>/``; returns ``{dataset: [file status, ...]}``."""
    dest = Path(dest)
    unknown = [d for d in datasets if d not in REGISTRY]
    if unknown:
        raise DownloadError(f"unknown dataset(s) {unknown}; known: {', '.join(sorted(REGISTRY))}")
    report: dict[str, list[str]] = {}
    zip_cache: dict[str, bytes] = {}
    for d in datasets:
        subdir, files = REGISTRY[d]
        folder = dest / subdir
        folder.mkdir(parents=True, exist_ok=True)
        report[d] = []
        for f in files:
            target = folder / f.name
            try:
                verify_sha256(target, f.sha256, f.size)
                status = "ok (already present)"
            except DownloadError:
                fetch_file(f, target, timeout=timeout, opener=opener, zip_cache=zip_cache)
                status = "downloaded"
            report[d].append(f"{f.name}: {status}")
            log(f"{subdir}/{f.name}: {status}")
        from unirec_lab.utils.atomic import atomic_write_text

        atomic_write_text(folder / MANIFEST, manifest_text(d))
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unirec_lab.data.download", description=__doc__.split("\n\n")[0])
    ap.add_argument("datasets", nargs="*", help=f"datasets to fetch (default: all): {', '.join(REGISTRY)}")
    ap.add_argument("--dest", type=Path, default=None, help="raw data root (default: $UNIREC_RAW_DIR or "
                    "../shared/data next to the repository)")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--list", action="store_true", help="list the datasets and files, fetch nothing")
    args = ap.parse_args(argv)
    if args.list:
        for d, (subdir, files) in REGISTRY.items():
            print(f"{d}  ({subdir}, {len(files)} files, {sum(f.size for f in files) / 1e6:.1f} MB)")
        return 0
    dest = args.dest or default_raw_dir()
    try:
        download(args.datasets or list(REGISTRY), dest, timeout=args.timeout)
    except RawDataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

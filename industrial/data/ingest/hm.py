"""H&M Personalized Fashion Recommendations (``hm_sample``, or the full Kaggle download).

Layout of a source folder::

    transactions*.csv      t_dat (YYYY-MM-DD), customer_id, article_id, price, sales_channel_id
    articles*.csv          article_id, prod_name, product_type_name, ..., detail_desc   (optional)
    images/<first 3 digits>/<article_id>.jpg

Article ids are strings of ASCII digits, zero-padded to 10 digits (``0111565001``); an id written
without its leading zero is padded; any other article id, an empty customer id and a ``t_dat``
that is not a ``YYYY-MM-DD`` date are bad rows. Every purchase is an event; its timestamp is the
day (midnight UTC, in seconds), and purchases of one day keep the file's order (several purchases
of one article by one customer on one day are ``duplicate_events``: kept unless ``--duplicates
drop``). The split is leave-one-out by time.

The catalogue is every article of the articles file plus every article purchased: a purchased
article without an articles row has no text (``item_without_metadata``, counted), and an article
without image file is text-only (``image_missing``), so an article with neither is ID-only. To keep
only articles with text and photo (the 4,116 of ``hm_sample``), prepare with
``require_content="both"``: the purchases of the other articles are dropped and counted
(``events_dropped_content``). Item text joins ``text_fields``. One domain, ``HM``.
"""

from __future__ import annotations

import re
from pathlib import Path

from industrial.data.ingest.base import Adapter, IngestRequest, RawDataset
from industrial.data.ingest.problems import Origin, Problems
from industrial.data.ingest.reading import compose_text, parse_date, read_csv, require_value
from industrial.data.schema import DatasetError

DOMAIN = "HM"
ARTICLE_ID_DIGITS = 10


_DIGITS = re.compile(r"[0-9]+")


def article_id(value: str) -> str:
    """The canonical 10-digit article id."""
    value = value.strip()
    return value.zfill(ARTICLE_ID_DIGITS) if _DIGITS.fullmatch(value) else value


def _parse_article(value: str | None, origin: Origin, problems: Problems) -> str | None:
    """The canonical article id, or a bad row (None) when it is not made of ASCII digits."""
    text = (value or "").strip()
    if not _DIGITS.fullmatch(text):
        problems.bad_row("malformed_row", origin, f"article_id {value!r} is not a number (ASCII digits)")
        return None
    return article_id(text)


def image_path(article: str) -> str:
    """Where the photo of ``article`` lies, relative to the source folder."""
    return f"images/{article[:3]}/{article}.jpg"


def _one_file(source: Path, pattern: str, required: bool) -> Path | None:
    matches = sorted(source.glob(pattern))
    if len(matches) > 1:
        raise DatasetError(f"{source}: several files match {pattern}: {[m.name for m in matches]}")
    if not matches and required:
        raise DatasetError(f"{source}: no file matches {pattern}")
    return matches[0] if matches else None


class HMAdapter(Adapter):
    name = "hm"
    summary = "H&M: transactions*.csv (t_dat, customer_id, article_id), articles*.csv, images/<3 digits>/<id>.jpg"
    default_text_fields = ("prod_name", "product_type_name", "colour_group_name", "detail_desc")

    def available_domains(self, source: Path) -> list[str]:
        return [DOMAIN] if any(source.glob("transactions*.csv")) else []

    def read(self, request: IngestRequest) -> RawDataset:
        domains = self.selected_domains(request)
        source, problems = request.source, request.problems
        data = self.new_dataset(request, domains, image_root=source, timestamps="real")
        catalog = data.catalog
        fields = self.text_fields(request)
        articles_path = _one_file(source, "articles*.csv", required=False)
        if articles_path is not None:
            for origin, record in read_csv(articles_path, problems, required=("article_id", *fields)):
                article = _parse_article(record["article_id"], origin, problems)
                if article is None:
                    continue
                catalog.add(DOMAIN, article, origin, text=compose_text(record, fields), image=image_path(article))
        transactions = _one_file(source, "transactions*.csv", required=True)
        assert transactions is not None
        data.event_files = [str(transactions)]
        for origin, record in read_csv(transactions, problems, required=("t_dat", "customer_id", "article_id")):
            timestamp = parse_date(record["t_dat"], "t_dat", origin, problems)
            if timestamp is None:
                continue
            customer = require_value(record["customer_id"], "customer_id", origin, problems)
            if customer is None:
                continue
            article = _parse_article(record["article_id"], origin, problems)
            if article is None:
                continue
            code = catalog.get(DOMAIN, article)
            if code is None:
                code = self._article_without_metadata(data, article, origin, articles_path)
            data.events.add(customer, code, timestamp)
        data.notes = {
            "timestamps": "t_dat (the purchase day, midnight UTC); purchases of one day keep the file's order",
            "images": "images/<first 3 digits>/<article_id>.jpg",
            "catalogue": "articles file rows, then purchased articles absent from it (without text)",
        }
        return data

    def _article_without_metadata(
        self, data: RawDataset, article: str, origin: Origin, articles_path: Path | None
    ) -> int:
        where = articles_path.name if articles_path is not None else "an articles file (none found)"
        data.catalog.problems.fallback(
            "item_without_metadata", origin, f"article {article} is not in {where}; it has no text"
        )
        return data.catalog.add(DOMAIN, article, origin, image=image_path(article))

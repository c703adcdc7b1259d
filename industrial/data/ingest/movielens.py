"""MovieLens-100K with posters and plot text (``ml100k_posters``).

Layout of a source folder::

    items.csv         movie_id, title, <genre flags>, year, overview, ...   (rows may repeat a movie)
    ratings.csv       user_id, movie_id, rating, unix_timestamp
    posters/<movie_id>.jpg

Every rating is an event (the rating value is not used), with its real timestamp; the split is
leave-one-out by time. Item text joins ``text_fields`` (default ``title``, ``overview``). The
poster is the item's image; a movie without poster file is text-only (``image_missing``). A repeated
``items.csv`` row keeps the first (``duplicate_item_row``); a rating of a movie absent from
``items.csv`` is an unknown item (a bad row). One domain, ``MovieLens``. Movie and user ids are
integers (ASCII digits), stored canonically: ``01`` and ``1`` are one id; any other is a bad row.
"""

from __future__ import annotations

from pathlib import Path

from industrial.data.ingest.base import Adapter, IngestRequest, RawDataset
from industrial.data.ingest.reading import compose_text, parse_id, parse_int, read_csv

DOMAIN = "MovieLens"


class MovieLensAdapter(Adapter):
    name = "movielens"
    summary = "MovieLens with posters: items.csv (movie_id, title, overview), ratings.csv, posters/<movie_id>.jpg"
    default_text_fields = ("title", "overview")

    def available_domains(self, source: Path) -> list[str]:
        return [DOMAIN] if (source / "ratings.csv").exists() else []

    def read(self, request: IngestRequest) -> RawDataset:
        domains = self.selected_domains(request)
        source, problems = request.source, request.problems
        data = self.new_dataset(request, domains, image_root=source, timestamps="real")
        fields = self.text_fields(request)
        items_path = source / "items.csv"
        for origin, record in read_csv(items_path, problems, required=("movie_id", *fields)):
            movie = parse_id(record["movie_id"], "movie_id", origin, problems)
            if movie is None:
                continue
            poster = f"posters/{record['movie_id'].strip()}.jpg"
            data.catalog.add(DOMAIN, movie, origin, text=compose_text(record, fields), image=poster)
        ratings_path = source / "ratings.csv"
        data.event_files = [str(ratings_path)]
        for origin, record in read_csv(ratings_path, problems, required=("user_id", "movie_id", "unix_timestamp")):
            user = parse_id(record["user_id"], "user_id", origin, problems)
            if user is None:
                continue
            movie = parse_id(record["movie_id"], "movie_id", origin, problems)
            if movie is None:
                continue
            timestamp = parse_int(record["unix_timestamp"], "unix_timestamp", origin, problems)
            if timestamp is None:
                continue
            code = data.catalog.lookup(DOMAIN, movie, origin, str(items_path))
            if code is not None:
                data.events.add(user, code, timestamp)
        data.notes = {"timestamps": "the ratings' unix_timestamp", "images": "posters/<movie_id>.jpg"}
        return data

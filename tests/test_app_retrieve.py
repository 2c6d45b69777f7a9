"""The app's /retrieve endpoint through gradio_client, on a tiny database (no classifiers loaded),
searched by the default backend and by Milvus Lite (when installed): the app works on either unchanged."""
from __future__ import annotations

import pytest

pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from test_retrieval import make_database  # noqa: E402


@pytest.fixture(scope="module", params=["auto", "milvus"])
def client(tmp_path_factory, request):
    import webapp
    from cvdemo.retrieval import milvus_available
    from cvdemo.service import Service

    if request.param == "milvus" and not milvus_available():
        pytest.skip("pymilvus and milvus-lite are an optional extra (requirements-dev.txt)")
    root = tmp_path_factory.mktemp("app-retrieve")
    database = make_database(root / "db", per_class=3, classes=(0, 1, 7))
    service = Service(checkpoints=root / "no-checkpoints", warm=False, database=database,
                      retrieval_extractor="pixels", retrieval_backend=request.param)
    demo = webapp.build_app(service)
    _, url, _ = webapp.launch(demo, service, prevent_thread_lock=True, quiet=True, server_name="127.0.0.1",
                           allowed_paths=[str(root)])
    try:
        client = Client(url, verbose=False)
        client.backend = request.param
        yield client, database, root
    finally:
        demo.close()


def rows(table) -> list[dict]:
    """The results table as the client receives it -> [{rank, path, label, distance}]."""
    return [dict(zip(table["headers"], row)) for row in table["data"]]


def test_retrieve_returns_ranked_results_and_gallery(client):
    c, database, _ = client
    gallery, table, verdict, _seen = c.predict(handle_file(str(database / "7" / "7_1.png")), 4,
                                               api_name="/retrieve")
    results = rows(table)
    assert [r["rank"] for r in results] == [1, 2, 3, 4]
    assert results[0]["label"] == "7" and results[0]["path"].endswith("7_1.png")
    assert [r["distance"] for r in results] == sorted(r["distance"] for r in results)
    assert len(gallery) == 4 and gallery[0]["caption"].startswith("#1 · 7_1.png · class 7")
    assert "mostly class <b>7</b>" in verdict
    assert ("milvus search" in verdict) == (c.backend == "milvus")
    _, table, _, _ = c.predict(handle_file(str(database / "0" / "0_0.jpg")), 50, api_name="/retrieve")
    assert len(rows(table)) == 9                                                   # k > N: everything


def test_retrieve_bad_file_is_a_clear_error(client):
    c, _, root = client
    junk = root / "junk.png"
    junk.write_text("this is text")
    with pytest.raises(AppError, match="could not be read"):
        c.predict(handle_file(str(junk)), 4, api_name="/retrieve")


def test_added_images_are_searchable_by_their_visitor_only_and_removable(client):
    from conftest import digit_image

    c, database, root = client
    before = sorted(p for p in database.rglob("*") if ".index" not in p.parts)
    new = root / "my new one.png"
    digit_image(1, 50).save(new)
    report, *_ = c.predict([handle_file(str(new))], "1", api_name="/add_to_database")
    assert "Added **1**" in report and "only you" in report
    _, table, _, _ = c.predict(handle_file(str(new)), 1, api_name="/retrieve")
    first = rows(table)[0]
    assert first["path"] == "your additions/1/my_new_one.png" and first["distance"] < 1e-3
    # another visitor (another session) never finds it; the database itself is untouched
    other = Client(c.src, verbose=False)
    _, table, _, _ = other.predict(handle_file(str(new)), 3, api_name="/retrieve")
    assert all("your additions" not in r["path"] for r in rows(table))
    assert sorted(p for p in database.rglob("*") if ".index" not in p.parts) == before
    assert other.predict(api_name="/my_additions") == []
    # the visitor removes it
    mine = c.predict(api_name="/my_additions")
    assert [m["file"] for m in mine] == ["your additions/1/my_new_one.png"]
    with pytest.raises(AppError):          # not among the other session's choices
        other.predict(mine[0]["id"], api_name="/remove_addition")
    assert "Removed" in c.predict(mine[0]["id"], api_name="/remove_addition")[0]
    _, table, _, _ = c.predict(handle_file(str(new)), 3, api_name="/retrieve")
    assert all("your additions" not in r["path"] for r in rows(table))

from tests.builders import add_document, lookup_and_attest


def test_whole_path(as_fastlege, world):
    doc = add_document(world)
    handle = lookup_and_attest(as_fastlege)
    r = as_fastlege.get(f"/pasient/{handle}/")
    assert r.status_code == 200
    assert "Epikrise etter innleggelse" in r.content.decode()
    r = as_fastlege.get(f"/pasient/{handle}/dokument/{doc.document_id}/")
    assert r.status_code == 200
    assert r["Content-Type"] == "application/pdf"

"""A real DICOMweb client against `ich-server`: `dicomweb-client` (PyPI) stores a study.

`DICOMwebClient(url=<base>/dicomweb, headers={"Authorization": ...}).store_instances(datasets)`
sends one STOW-RS request with a quoted boundary, and a chunked body when
the data exceed its chunk_size (1 MB; the three 512x512 slices here do)
(docs: /work/shared/notes/dicomweb-facts.md). The server must answer with a
DICOM JSON response the client parses: every instance in
ReferencedSOPSequence, no FailedSOPSequence; then the study's result appears
(complete, three slices, ordered by position).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import service  # noqa: E402

dicomweb_client = pytest.importorskip("dicomweb_client")


@pytest.fixture(scope="module")
def dw_server(tmp_path_factory):
    problem = service.binary_problem(service.server_binary())
    if problem:
        pytest.fail(problem, pytrace=False)
    folder = tmp_path_factory.mktemp("dicomweb-client")
    srv = service.Server(folder / "data", service.test_bundle(), args=["--threads", "2", "--stable-age", "1"])
    srv.start()
    yield srv
    assert srv.stop() == 0, srv.log_tail()


def test_store_instances_with_dicomweb_client(dw_server):
    from dicomweb_client.api import DICOMwebClient

    token = dw_server.token("ingest", name="dicomweb-client")
    study = service.new_uid()
    # Uploaded out of order: the result must come back ordered by position
    datasets = [service.ct_dataset(study=study, sop=service.new_uid(), instance=k + 1,
                                   position=(-125.0, -125.0, 5.0 * k), rows=512, cols=512, seed=900 + k)
                for k in (2, 0, 1)]
    # 3 x 512 x 512 x 2 bytes > the client's chunk_size (1 MB): it sends the body chunked, as PACS-side scripts do
    client = DICOMwebClient(url=dw_server.base_url + "/dicomweb", headers={"Authorization": f"Bearer {token}"})
    response = client.store_instances(datasets)

    assert "FailedSOPSequence" not in response, response
    referenced = response.ReferencedSOPSequence
    assert [item.ReferencedSOPInstanceUID for item in referenced] == [ds.SOPInstanceUID for ds in datasets]
    for item in referenced:
        assert item.ReferencedSOPClassUID == service.CT_IMAGE_STORAGE
        assert str(item.RetrieveURL).endswith(f"/v1/instances/{item.ReferencedSOPInstanceUID}")
        assert "WarningReason" not in item
    assert str(response.RetrieveURL).endswith(f"/dicomweb/studies/{study}")

    reader = dw_server.client(dw_server.token("read"))
    result = reader.wait_complete(study, timeout=120)
    assert result["counts"] == {"received": 3, "processed": 3, "failed": 0, "skipped": 0, "queued": 0}
    assert [s["instanceNumber"] for s in result["slices"]] == [1, 2, 3]
    assert all(s["status"] == "done" for s in result["slices"])

    # Sending the same study again: a success with warnings (duplicates), not a failure
    again = client.store_instances(datasets)
    assert "FailedSOPSequence" not in again
    assert [int(item.WarningReason) for item in again.ReferencedSOPSequence] == [45070] * 3
    assert reader.study(study).json()["counts"]["received"] == 3

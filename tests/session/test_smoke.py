def test_start_enter_dispose(make_lab):
    lab = make_lab()
    sid = lab.new_session()
    assert lab.started
    assert lab.status(sid) == 5
    r = lab.enter(sid)
    assert r.status_code == 302 and r.headers["Location"].endswith("/lab/")
    r = lab.client.get("/lab/")
    assert r.data == b"hello jdoe 1", r.data
    r = lab.client.get("/lab/")
    assert r.data == b"hello jdoe 2"
    assert lab.dispose(sid) == {"message": "Deleted"}
    assert lab.disposed == [sid]
    assert lab.dispose(sid) == {"message": "Not found"}
    assert lab.status(sid) == -1
    r = lab.client.get("/lab/")
    assert r.status_code == 302 and r.headers["Location"] == "http://rlms/back"

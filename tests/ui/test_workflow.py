"""The web UI in a real browser against a real `mosaic serve --http`: sign in, upload a
folder, browse, search, download (a file and a folder as tar) and compare bytes, rename,
new folder, delete with confirmation, file details (hash, preview, verify), sign out."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from .harness import Browser, Node, b3, make_tree, names_under, wait_for

FILES = {
    "a.txt": b"hello from the web UI\n",
    "sub/b.txt": b"line of text\n" * 2000,
    "sub/\u00fcn\u00ef c\u00f6d\u00e9.bin": os.urandom(300_000),
    "sub/deeper/empty.dat": b"",
    "pic.png": bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
        "0000000c4944415408d763f8cfc000000301010018dd8db00000000049454e44ae426082"),
}


def row(b: Browser, path: str):  # noqa: ANN201 - a WebElement or None
    """The list row showing `path`, if rendered."""
    return b.js("return [...document.querySelectorAll('.row')]"
                ".find(r => r.dataset.path === arguments[0]) || null", path)


def wait_row(b: Browser, path: str, present: bool = True) -> None:
    b.wait(lambda d: (row(b, path) is not None) == present,
           what=f"row {path} {'shown' if present else 'gone'}")


def on_row(b: Browser, path: str, *css: str) -> None:
    """Click, in a row, each of these elements in turn (again if the list re-rendered).

    The list re-renders after each change (rows go and come back), so the row is waited
    for, not looked up once: right after a delete it can be missing for a moment."""
    for attempt in range(3):
        try:
            wait_row(b, path)
            r = row(b, path)
            if r is None:  # re-rendered between the wait and the lookup
                raise StaleElementReferenceException(f"row {path} went away")
            for c in css:
                r.find_element(By.CSS_SELECTOR, c).click()
            return
        except StaleElementReferenceException:
            if attempt == 2:
                raise


def act(b: Browser, path: str, action_css: str) -> None:
    """Focus a row (so its actions show) and press one of its action buttons."""
    on_row(b, path, ".c-size", action_css)


@pytest.fixture(scope="module")
def signed_in(node: Node, browser: Browser) -> Browser:
    browser.sign_in(node.url, node.tokens["writer"])
    return browser


@pytest.fixture(scope="module")
def uploaded(node: Node, signed_in: Browser, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The folder `tree` uploaded through the UI's folder picker; relative path -> b3sum."""
    b = signed_in
    src = tmp_path_factory.mktemp("src") / "tree"
    want = make_tree(src, FILES)
    b.driver.get(node.url + "/files/")
    b.visible("#pick-folder")
    b.find("#folder-input").send_keys(str(src))
    b.wait(lambda d: b.find("#uploads").get_attribute("data-done") == str(len(FILES))
           and b.find("#uploads").get_attribute("data-total") == str(len(FILES)),
           what="every upload done")
    shown = b.js("return Object.fromEntries([...document.querySelectorAll('.up[data-path]')]"
                 ".map(u => [u.dataset.path, u.dataset.hash]))")
    assert shown == {f"tree/{rel}": h for rel, h in want.items()}  # the Mosaic-Hash of each
    return want


def test_sign_in_refuses_a_wrong_token_then_signs_in_and_out(node: Node, browser: Browser) -> None:
    b = browser
    b.driver.get(node.url + "/files/")
    b.wait(lambda d: "/signin" in d.current_url, what="redirect to sign-in")
    b.visible("#token").send_keys("mosaic_not-a-real-token")
    b.find("#signin-submit").click()
    err = b.visible("#signin-error")
    assert "not valid" in err.text
    b.sign_in(node.url, node.tokens["reader"], "/dashboard")
    assert b.driver.current_url.endswith("/dashboard")
    cookie = b.driver.get_cookie("mosaic_session")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert b.js("return document.cookie").find("mosaic_session") < 0  # HttpOnly: not readable
    assert b.find("#scope").text.startswith("read")
    b.visible("#signout").click()
    b.wait(lambda d: "/signin" in d.current_url, what="signed out")
    b.driver.get(node.url + "/dashboard")
    b.wait(lambda d: "/signin" in d.current_url, what="pages need a session again")


def test_folder_upload_arrives_complete(node: Node, uploaded: dict) -> None:
    with node.api(node.tokens["reader"]) as api:
        got = names_under(api, "tree")
    assert got == {f"tree/{rel}": h for rel, h in uploaded.items()}


def test_browse_folders_breadcrumbs_and_keyboard(node: Node, signed_in: Browser, uploaded: dict) -> None:
    b = signed_in
    b.driver.get(node.url + "/files/")
    wait_row(b, "tree")
    on_row(b, "tree", ".name a")
    b.wait(lambda d: d.current_url.endswith("/files/tree"), what="into tree")
    for p in ("tree/a.txt", "tree/sub", "tree/pic.png"):
        wait_row(b, p)
    entry = row(b, "tree/a.txt")
    assert entry.find_element(By.CSS_SELECTOR, ".c-size").text == f"{len(FILES['a.txt'])} B"
    assert "node" in entry.find_element(By.CSS_SELECTOR, ".c-copies").text
    assert entry.find_element(By.CSS_SELECTOR, ".c-cached").text.endswith("100%")
    # keyboard: focus the list, move to the folder "sub" (sorted by name: a.txt, pic.png, sub)
    b.find("#viewport").click()
    vp = b.find("#viewport")
    vp.send_keys(Keys.HOME)
    for _ in range(5):
        if b.js("return document.activeElement.dataset.path") == "tree/sub":
            break
        b.driver.switch_to.active_element.send_keys(Keys.ARROW_DOWN)
    assert b.js("return document.activeElement.dataset.path") == "tree/sub"
    b.driver.switch_to.active_element.send_keys(Keys.ENTER)
    b.wait(lambda d: d.current_url.endswith("/files/tree/sub"), what="Enter opens the folder")
    wait_row(b, "tree/sub/deeper")
    crumbs = [a.text for a in b.finds("#crumbs a, #crumbs [aria-current]")]
    assert crumbs == ["Files", "tree", "sub"]
    b.find("#crumbs a[href='/files/tree']").click()
    b.wait(lambda d: d.current_url.endswith("/files/tree"), what="breadcrumb back")


def test_sorting_by_size(node: Node, signed_in: Browser, uploaded: dict) -> None:
    b = signed_in
    b.driver.get(node.url + "/files/tree/sub")
    wait_row(b, "tree/sub/b.txt")
    b.find("button[data-sort='size']").click()
    order = b.js("return [...document.querySelectorAll('.row')]"
                 ".sort((x, y) => x.dataset.i - y.dataset.i).map(r => r.dataset.path)")
    assert order == ["tree/sub/deeper", "tree/sub/\u00fcn\u00ef c\u00f6d\u00e9.bin", "tree/sub/b.txt"]
    assert b.find("[role=columnheader].c-size").get_attribute("aria-sort") == "descending"


def test_search_by_substring_and_glob(node: Node, signed_in: Browser, uploaded: dict) -> None:
    b = signed_in
    b.driver.get(node.url + "/files/")
    box = b.visible("#search")
    box.send_keys("b.txt")
    wait_row(b, "tree/sub/b.txt")
    assert "match" in b.find("#summary").text
    box.clear()
    box.send_keys("*.png")
    wait_row(b, "tree/pic.png")
    wait_row(b, "tree/sub/b.txt", present=False)
    box.send_keys(Keys.ESCAPE)
    wait_row(b, "tree")


def test_download_a_file_and_a_folder_archive(node: Node, signed_in: Browser, uploaded: dict) -> None:
    b = signed_in
    b.driver.get(node.url + "/files/tree/sub")
    name = "\u00fcn\u00ef c\u00f6d\u00e9.bin"
    wait_row(b, f"tree/sub/{name}")
    act(b, f"tree/sub/{name}", "a[download]")
    got = b.downloaded(name).read_bytes()
    assert b3(got) == uploaded[f"sub/{name}"]
    b.driver.get(node.url + "/files/")
    wait_row(b, "tree")
    act(b, "tree", "a[download]")
    data = b.downloaded("tree.tar").read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    assert {k: b3(v) for k, v in members.items()} == {f"tree/{k}": v for k, v in uploaded.items()}


def test_details_show_hash_preview_and_verify(node: Node, signed_in: Browser, uploaded: dict) -> None:
    b = signed_in
    b.driver.get(node.url + "/files/tree")
    wait_row(b, "tree/a.txt")
    on_row(b, "tree/a.txt", ".name a")
    b.wait(lambda d: b.find("#hash").text == uploaded["a.txt"], what="the hash shown")
    assert b.visible("#preview-text").text.strip() == FILES["a.txt"].decode().strip()
    assert "1 (1 distinct)" == b.find("#f-chunks").text
    assert [e.get_attribute("data-kind") for e in b.finds("#where .loc")][0] == "local"
    b.find("#verify").click()
    assert "Verified" in b.visible("#verify-ok").text
    b.driver.get(node.url + "/details/tree/pic.png")
    img = b.visible("#preview img")
    b.wait(lambda d: b.js("return arguments[0].complete && arguments[0].naturalWidth", img) == 1,
           what="the image preview")


def test_new_folder_rename_and_delete_with_confirmation(node: Node, signed_in: Browser,
                                                        uploaded: dict) -> None:
    b = signed_in
    api = node.api(node.tokens["reader"])
    b.driver.get(node.url + "/files/tree")
    wait_row(b, "tree/a.txt")
    # new folder
    b.find("#new-folder").click()
    b.visible("#dlg-name-input").send_keys("made here" + Keys.ENTER)
    wait_row(b, "tree/made here")
    assert api.get("/v1/tree/tree/made here").status_code == 200
    # rename a file into the new folder
    act(b, "tree/a.txt", "[data-act='rename']")
    box = b.visible("#dlg-name-input")
    assert box.get_attribute("value") == "tree/a.txt"
    box.clear()
    box.send_keys("tree/made here/renamed.txt" + Keys.ENTER)
    wait_row(b, "tree/a.txt", present=False)
    assert api.get("/v1/stat/tree/made here/renamed.txt").json()["hash"] == uploaded["a.txt"]
    assert api.get("/v1/stat/tree/a.txt").status_code == 404
    # rename the folder: what is in it moves along
    act(b, "tree/made here", "[data-act='rename']")
    box = b.visible("#dlg-name-input")
    box.clear()
    box.send_keys("tree/moved dir" + Keys.ENTER)
    wait_row(b, "tree/moved dir")
    assert api.get("/v1/stat/tree/moved dir/renamed.txt").json()["hash"] == uploaded["a.txt"]
    # delete: cancel first (nothing happens), then confirm
    act(b, "tree/pic.png", "[data-act='delete']")
    b.visible("#dlg-delete-text")
    b.find("#dlg-delete button[value='cancel']").click()
    b.wait(lambda d: not b.find("#dlg-delete").get_attribute("open"), what="dialog closed")
    assert api.get("/v1/stat/tree/pic.png").status_code == 200
    act(b, "tree/pic.png", "[data-act='delete']")
    b.visible("#dlg-delete-ok").click()
    wait_row(b, "tree/pic.png", present=False)
    assert api.get("/v1/stat/tree/pic.png").status_code == 404
    # a whole folder, after confirmation
    act(b, "tree/sub", "[data-act='delete']")
    assert "every file in it" in b.visible("#dlg-delete-text").text
    b.find("#dlg-delete-ok").click()
    wait_row(b, "tree/sub", present=False)
    assert not any(p.startswith("tree/sub/") for p in names_under(api, "tree"))
    api.close()


def test_reader_sees_no_write_controls(node: Node, browser: Browser, tmp_path: Path) -> None:
    b = browser
    b.sign_in(node.url, node.tokens["reader"], "/files/")
    b.visible("#archive")
    assert not b.finds("#pick-files") and not b.finds("#new-folder")
    wait_for(lambda: b.find("#summary").text, 10, "the listing")
    assert not b.finds("[data-act='delete']")


def test_a_prefixed_token_stays_in_its_folder(node: Node, browser: Browser, tmp_path: Path) -> None:
    b = browser
    b.sign_in(node.url, node.tokens["projects"])  # write, prefix "projects"
    b.wait(lambda d: d.current_url.endswith("/files/projects"), what="home is the prefix")
    b.driver.get(node.url + "/files/")
    b.wait(lambda d: d.current_url.endswith("/files/projects"), what="the root leads home")
    src = tmp_path / "plan.txt"
    src.write_bytes(b"inside the prefix\n")
    b.find("#file-input").send_keys(str(src))
    wait_row(b, "projects/plan.txt")
    b.driver.get(node.url + "/files/tree")
    assert "outside your token" in b.visible("main").text
    with node.api(node.tokens["reader"]) as api:
        assert api.get("/v1/stat/projects/plan.txt").json()["hash"] == b3(src.read_bytes())


def test_files_dropped_on_the_list_are_uploaded(node: Node, signed_in: Browser) -> None:
    b = signed_in
    b.sign_in(node.url, node.tokens["writer"], "/files/dropped")
    b.visible("#pick-files")
    # a drop as the browser delivers it (a DataTransfer holding files) onto the list
    b.js("""
        const dt = new DataTransfer();
        dt.items.add(new File(['dropped one\\n'], 'one.txt', {type: 'text/plain'}));
        dt.items.add(new File([new Uint8Array(70000).fill(7)], 'two.bin'));
        const list = document.getElementById('listing');
        for (const type of ['dragenter', 'dragover']) {
            list.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
        }
        if (document.getElementById('drop-hint').hidden) throw new Error('no drop hint');
        list.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
    """)
    wait_row(b, "dropped/one.txt")
    wait_row(b, "dropped/two.bin")
    assert b.find("#drop-hint").get_attribute("hidden") is not None
    with node.api(node.tokens["reader"]) as api:
        assert names_under(api, "dropped") == {"dropped/one.txt": b3(b"dropped one\n"),
                                                "dropped/two.bin": b3(bytes([7]) * 70000)}


def test_file_dialogs_show_errors_rename_and_delete(node: Node, signed_in: Browser) -> None:
    """On a file's page: the name dialog stays open on a missing name or a refused move (the
    error shown, OK usable again), then renames; the delete dialog shows a failure, cancels,
    and deletes."""
    b = signed_in
    with node.api(node.tokens["writer"]) as api:
        for name in ("dialogs/f.txt", "dialogs/keep.txt"):
            assert api.put(f"/v1/names/{name}", content=name.encode()).status_code in (200, 201)
    b.driver.get(node.url + "/details/dialogs/f.txt")
    b.find("#rename").click()
    box = b.visible("#dlg-name-input")
    assert box.get_attribute("value") == "dialogs/f.txt"
    box.clear()
    box.send_keys("  " + Keys.ENTER)  # blank (an empty field the browser itself refuses)
    b.wait(lambda d: b.find("#dlg-name-err").text == "A name is needed.", what="no-name error")
    box.clear()
    box.send_keys("dialogs/f.txt" + Keys.ENTER)  # onto itself: the server refuses
    b.wait(lambda d: "itself" in b.find("#dlg-name-err").text, what="the server's refusal")
    assert b.find("#dlg-name").get_attribute("open") is not None
    assert b.find("#dlg-name button[value='ok']").is_enabled()
    box.clear()
    box.send_keys("dialogs/g.txt" + Keys.ENTER)
    b.visible("#details[data-name='dialogs/g.txt']")
    with node.api(node.tokens["writer"]) as api:
        assert api.get("/v1/stat/dialogs/f.txt").status_code == 404
        assert api.delete("/v1/names/dialogs/g.txt").status_code == 204  # behind the page's back
    b.find("#delete").click()
    assert "dialogs/g.txt" in b.visible("#dlg-delete-text").text
    b.find("#dlg-delete-ok").click()
    b.wait(lambda d: b.find("#dlg-delete-err").text, what="the failed delete's error")
    assert b.find("#dlg-delete-ok").is_enabled()
    b.find("#dlg-delete button[value='cancel']").click()
    b.wait(lambda d: not b.find("#dlg-delete").get_attribute("open"), what="dialog closed")
    assert b.driver.current_url.endswith("/details/dialogs/g.txt")
    b.driver.get(node.url + "/details/dialogs/keep.txt")
    b.find("#delete").click()
    b.visible("#dlg-delete-ok").click()
    b.wait(lambda d: d.current_url.endswith("/files/dialogs"), what="back to the folder")
    with node.api(node.tokens["reader"]) as api:
        assert api.get("/v1/stat/dialogs/keep.txt").status_code == 404

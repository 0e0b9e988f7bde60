"""The password-reset and delete-account pages in a real headless Chromium.

``paster serve`` runs with SMTP pointed at the tests' own SMTP server; the
browser loads the request page, types, submits, the test reads the mail,
the browser opens the link, sets the new password, and a Sync client then
authenticates with it. Debian's ``chromium`` and ``chromedriver`` are used
as installed (selenium never downloads a browser).
"""

import shutil
import tempfile

import pytest

from tests.conftest import service_missing
from tests.controllers.test_password_reset_api import mailed_link

from .conftest import Client, register, running_server

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
NEW_PASSWORD = "a password typed in a browser"


@pytest.fixture(scope="module")
def browser():
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        service_missing("Chromium", "install Debian's chromium and chromium-driver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as error:
        service_missing("selenium", error)
    profile = tempfile.mkdtemp(prefix="syncserver-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    except Exception as error:
        shutil.rmtree(profile, ignore_errors=True)
        service_missing("Chromium via chromedriver", error)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def reset_server(tmp_path_factory, _smtp_server):
    if isinstance(_smtp_server, Exception):
        service_missing("SMTP test server (aiosmtpd)", _smtp_server)
    overrides = {"smtp.host": "127.0.0.1", "smtp.port": _smtp_server.port,
                 "smtp.sender": "sync@example.org", "pages.csrf_secret": "e2e-secret"}
    with running_server(tmp_path_factory.mktemp("e2e-reset"), overrides) as running:
        yield running


def submit(browser, fields, button="button[type=submit]"):
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    for name, value in fields.items():
        element = browser.find_element(By.NAME, name)
        if element.get_attribute("type") == "checkbox":
            if element.is_selected() != value:
                element.click()
        else:
            element.clear()
            element.send_keys(value)
    # A mark on this document's window: the next document has none. (Waiting for the
    # old <html> element to go stale races with newer ChromeDrivers, which may answer
    # "Node with given id does not belong to the document" instead of "stale".)
    browser.execute_script("window.syncserverOldPage = true;")
    browser.find_element(By.CSS_SELECTOR, button).click()
    # A script sent while the page changes may fail: ask again.
    WebDriverWait(browser, 20, ignored_exceptions=(WebDriverException,)).until(
        lambda driver: not driver.execute_script("return window.syncserverOldPage === true;"))
    WebDriverWait(browser, 20).until(
        expected_conditions.presence_of_element_located((By.TAG_NAME, "main")))
    return browser.find_element(By.TAG_NAME, "main").text


def test_reset_password_in_a_browser(browser, reset_server, smtp_server):
    email, username, password = register(reset_server, "browser")
    browser.get(reset_server.url + "/weave-password-reset")
    assert browser.title.startswith("Forgot your password")
    text = submit(browser, {"username": email})
    assert "If an account with that name exists" in text
    url, _, _ = mailed_link(smtp_server, email)
    assert url.startswith(reset_server.url + "/weave-password-reset?")
    browser.get(url)
    assert browser.title.startswith("Choose a new password")
    text = submit(browser, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert "Password successfully changed" in text

    client = Client(f"{reset_server.url}/1.1/{username}/", username, NEW_PASSWORD)
    try:
        assert client.get("info/collections").status == 200
        assert client.put("storage/bookmarks/a", {"payload": "after reset"}).status == 200
        assert client.get("info/collections", headers=client_auth(client, password)).status == 401
    finally:
        client.close()


def test_delete_account_in_a_browser(browser, reset_server):
    _, username, password = register(reset_server, "browser-delete")
    browser.get(reset_server.url + "/weave-delete-account")
    text = submit(browser, {"username": username, "password": password, "confirm": True})
    assert "have been deleted" in text
    client = Client(reset_server.url)
    try:
        assert client.get(f"/user/1.0/{username}").text == "0"
    finally:
        client.close()


def client_auth(client, password):
    return {"Authorization": client.auth_header(password=password)}

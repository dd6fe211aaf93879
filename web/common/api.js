// What the live page and the dashboards share: a GET of one of the server's JSON answers, with
// the token the page was opened with (`?token=`, else the cookie the server set), and an error
// that says what failed (the server's JSON `error`, else its status and plain text).
"use strict";

window.quickchatApi = (() => {
  const token = new URLSearchParams(location.search).get("token");

  async function getJson(url) {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const response = await fetch(url, { headers, cache: "no-store" });
    const body = await response.text();
    let json = null;
    try { json = JSON.parse(body); } catch { /* a plain-text error */ }
    if (!response.ok) throw new Error(json?.error ?? `${url}: ${response.status} ${body}`);
    return json;
  }

  return { getJson };
})();

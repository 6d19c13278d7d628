// The rating studio's one script (served from /static, allowed by the CSP as 'self').
// Login: the token in the URL fragment is removed from the address bar and POSTed once.
// Rating and adjudication: every change (score, verdict, evidence, note) is POSTed at
// once as the item's whole rating, one request at a time in the order made, with the
// CSRF token in a header; the status line says whether everything is saved.
"use strict";

(function () {
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : "";

  async function post(url, body, options) {
    const response = await fetch(url, Object.assign({
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
    }, options || {}));
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = { error: "the server's answer was not JSON (" + response.status + ")" };
    }
    if (!response.ok) {
      const error = new Error(data && data.error ? data.error : "refused (" + response.status + ")");
      error.status = response.status;
      error.data = data;
      throw error;
    }
    return data;
  }

  // -- header: log out ------------------------------------------------------------------
  const logout = document.querySelector("button.logout");
  if (logout) {
    logout.addEventListener("click", async function () {
      try {
        const data = await post(logout.dataset.url, {});
        window.location.assign(data.next);
      } catch (err) {
        window.location.reload();
      }
    });
  }

  // -- login ----------------------------------------------------------------------------
  const loginForm = document.getElementById("login-form");
  if (loginForm) {
    const state = document.getElementById("login-state");
    const login = async function (token) {
      state.textContent = "Logging in…";
      try {
        const data = await post(loginForm.dataset.url, { token: token });
        window.location.replace(data.next);
      } catch (err) {
        state.textContent = err.message;
        state.classList.add("error");
      }
    };
    loginForm.addEventListener("submit", function (event) {
      event.preventDefault();
      login(document.getElementById("token").value.trim());
    });
    const match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
    if (match) {
      // out of the address bar and the history before anything else happens
      window.history.replaceState(null, "", window.location.pathname);
      login(decodeURIComponent(match[1]));
    }
  }

  // -- rating and adjudication ---------------------------------------------------------------
  const root = document.getElementById("rating");
  if (!root) {
    return;
  }
  const saveUrl = root.dataset.saveUrl;
  const readonly = root.dataset.readonly === "true";
  const status = document.getElementById("save-state");
  const answered = document.getElementById("answered");
  const items = Array.from(root.querySelectorAll("section.item"));
  const turns = Array.from(root.querySelectorAll("li.turn"));
  const noteTimers = new Map(); // notes being typed, saved 0.5 s after the last key
  let active = null; // the item that evidence clicks go to

  function setStatus(text, error) {
    status.textContent = text;
    status.classList.toggle("error", Boolean(error));
  }

  function ratingOf(item) {
    const value = item.dataset.value;
    return {
      item: item.dataset.item,
      value: value === "" ? null : Number(value),
      na: item.dataset.na === "true",
      evidence: item.dataset.evidence ? item.dataset.evidence.split(" ").map(Number) : [],
      note: item.querySelector("textarea.note").value,
    };
  }

  function show(item) {
    const r = ratingOf(item);
    item.querySelectorAll("button.choice").forEach(function (b) {
      const on = b.dataset.na === "true" ? r.na : (!r.na && r.value !== null && Number(b.dataset.value) === r.value);
      b.setAttribute("aria-pressed", on ? "true" : "false");
    });
    item.classList.toggle("answered", r.na || r.value !== null);
    item.querySelector(".evidence-list").textContent = r.evidence.length ? r.evidence.join(", ") : "none";
    if (item === active) {
      markEvidence();
    }
    if (answered) {
      const n = items.filter(function (i) { return i.classList.contains("answered"); }).length;
      answered.textContent = n + " of " + items.length + " items answered";
    }
  }

  function markEvidence() {
    const cited = active ? ratingOf(active).evidence : [];
    turns.forEach(function (t) {
      t.classList.toggle("cited", cited.indexOf(Number(t.dataset.turn)) >= 0);
    });
  }

  function activate(item) {
    if (active === item) {
      return;
    }
    if (active) {
      active.classList.remove("active");
    }
    active = item;
    item.classList.add("active");
    window.history.replaceState(null, "", "#" + item.id);
    markEvidence();
  }

  // Saves go out one at a time, each the item's latest whole rating, so the server's row is
  // always the last change; changes made while one is in flight are coalesced.
  const dirty = new Set();
  let idle = null; // the running drain, or null

  function save(item) {
    if (readonly) {
      return Promise.resolve();
    }
    dirty.add(item);
    setStatus("Saving…", false);
    if (!idle) {
      idle = drain();
    }
    return idle;
  }

  async function drain() {
    while (dirty.size) {
      const item = dirty.values().next().value;
      dirty.delete(item);
      try {
        await post(saveUrl, ratingOf(item), { keepalive: true });
        item.classList.remove("unsaved");
      } catch (err) {
        item.classList.add("unsaved");
        setStatus("Not saved: " + err.message, true);
      }
    }
    idle = null;
    if (!root.querySelector("section.item.unsaved")) {
      setStatus("All changes saved", false);
    }
  }

  function flushNotes() {
    noteTimers.forEach(function (timer, item) {
      clearTimeout(timer);
      dirty.add(item);
    });
    noteTimers.clear();
  }

  function answer(item, value, na) {
    if (readonly) {
      setStatus("This rating is " + root.dataset.state + ": it cannot change.", true);
      return;
    }
    item.dataset.value = value === null ? "" : String(value);
    item.dataset.na = na ? "true" : "false";
    show(item);
    save(item);
  }

  function toggleEvidence(turn) {
    if (!active) {
      setStatus("Choose an item first (Tab to it), then the turns that support it.", true);
      return;
    }
    if (readonly) {
      setStatus("This rating is " + root.dataset.state + ": it cannot change.", true);
      return;
    }
    const n = Number(turn.dataset.turn);
    const cited = ratingOf(active).evidence;
    const at = cited.indexOf(n);
    if (at >= 0) {
      cited.splice(at, 1);
    } else {
      cited.push(n);
    }
    cited.sort(function (a, b) { return a - b; });
    active.dataset.evidence = cited.join(" ");
    show(active);
    save(active);
  }

  function noteChanged(item, now) {
    clearTimeout(noteTimers.get(item));
    noteTimers.delete(item);
    if (now) {
      save(item);
    } else {
      noteTimers.set(item, setTimeout(function () { noteTimers.delete(item); save(item); }, 500));
    }
  }

  items.forEach(function (item) {
    item.addEventListener("focusin", function () { activate(item); });
    item.querySelectorAll("button.choice").forEach(function (b) {
      b.addEventListener("click", function () {
        activate(item);
        if (b.dataset.na === "true") {
          answer(item, null, true);
        } else {
          answer(item, Number(b.dataset.value), false);
        }
        item.focus();
      });
    });
    const note = item.querySelector("textarea.note");
    note.readOnly = readonly;
    note.addEventListener("input", function () { noteChanged(item, false); });
    note.addEventListener("change", function () { noteChanged(item, true); });
    note.addEventListener("keydown", function (event) {
      if (event.key === "Escape") {
        event.preventDefault();
        noteChanged(item, true);
        item.focus();
      }
    });
    item.addEventListener("keydown", function (event) {
      if (event.target !== item || event.ctrlKey || event.metaKey || event.altKey) {
        return;
      }
      const key = event.key;
      let handled = true;
      if (item.dataset.kind === "ctrs" && /^[0-6]$/.test(key)) {
        answer(item, Number(key), false);
      } else if (item.dataset.kind === "safety" && key === "y") {
        answer(item, 1, false);
      } else if (item.dataset.kind === "safety" && key === "n") {
        answer(item, 0, false);
      } else if (item.dataset.kind === "safety" && key === "a" && item.querySelector('button[data-na="true"]')) {
        answer(item, null, true);
      } else if (key === "Delete" || key === "Backspace") {
        answer(item, null, false);
      } else if (key === "m") {
        note.focus();
      } else if (key === "g") {
        const more = item.querySelector("details.guidance");
        if (more) {
          more.open = !more.open;
        }
      } else if (key === "e" && turns.length) {
        const first = turns.find(function (t) { return t.classList.contains("cited"); }) || turns[0];
        first.focus();
      } else {
        handled = false;
      }
      if (handled) {
        event.preventDefault();
      }
    });
  });

  turns.forEach(function (turn) {
    turn.addEventListener("click", function () { toggleEvidence(turn); });
    turn.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        toggleEvidence(turn);
      } else if (event.key === "Escape" && active) {
        event.preventDefault();
        active.focus();
      }
    });
  });

  // What is not yet sent when the tab closes (a note typed a moment ago) still goes out.
  window.addEventListener("pagehide", function () {
    if (readonly) {
      return;
    }
    flushNotes();
    dirty.forEach(function (item) {
      fetch(saveUrl, {
        method: "POST",
        credentials: "same-origin",
        keepalive: true,
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify(ratingOf(item)),
      });
    });
    dirty.clear();
  });

  async function act(action, body) {
    flushNotes(); // every change is saved before the state changes
    if (dirty.size || idle) {
      await (idle || save(dirty.values().next().value));
    }
    try {
      const data = await post(saveUrl + "/" + action, body || {});
      return data;
    } catch (err) {
      setStatus(err.message, true);
      const missing = err.data && err.data.missing;
      if (missing && missing.length) {
        items.forEach(function (i) { i.classList.toggle("missing", missing.indexOf(i.dataset.item) >= 0); });
        const first = items.find(function (i) { return i.dataset.item === missing[0]; });
        if (first) {
          first.focus();
        }
      }
      return null;
    }
  }

  // After a submit: the next open session, or in practice this page again (the reference
  // ratings appear); after a skip: the next one; after a reopen: this page, open again.
  const after = {
    submit: function () {
      return root.dataset.phase === "practice" ? null : root.dataset.nextUrl;
    },
    skip: function () { return root.dataset.nextUrl; },
    reopen: function () { return null; },
  };
  Object.keys(after).forEach(function (action) {
    const button = document.getElementById(action);
    if (button) {
      button.addEventListener("click", async function () {
        if (await act(action)) {
          const next = after[action]();
          if (next) {
            window.location.assign(next);
          } else {
            window.location.reload();
          }
        }
      });
    }
  });
  const flag = document.getElementById("flag");
  if (flag) {
    flag.addEventListener("click", async function () {
      const on = flag.getAttribute("aria-pressed") !== "true";
      const data = await act("flag", { flagged: on });
      if (data) {
        flag.setAttribute("aria-pressed", data.flagged ? "true" : "false");
        setStatus(data.flagged ? "Flagged for discussion" : "Flag removed", false);
      }
    });
  }

  // Back to where the rater was: the item named in the fragment, else the first unanswered.
  const named = window.location.hash ? document.getElementById(window.location.hash.slice(1)) : null;
  const start = (named && items.indexOf(named) >= 0) ? named
    : (items.find(function (i) { return !i.classList.contains("answered"); }) || items[0]);
  if (start) {
    start.focus();
  }
})();

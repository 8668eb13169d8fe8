"""The page script that tells the web environment whether a page is still reacting.

Installed with Playwright's `add_init_script` into every document of the context, it
runs before the page's own scripts and keeps `window.__cuaSettle` (not enumerable):

- `mark()` is called just before an action is dispatched; what the page starts after it
  is that action's reaction.
- `state()` says what of the reaction is still pending:
  `timers`: one-shot `setTimeout`s of at most `bound_ms` scheduled since the mark (or, at
  load, since the document started), followed through chains of up to 5 timers
  (`setTimeout` from a timer callback, or `await sleep()` loops: a timer scheduled within
  5 ms after one with the same callback and delay fired continues its chain). Timers
  chained from a timer scheduled before the mark, `setInterval` and
  `requestAnimationFrame` loops are ambient, never waited for.
  `requests`: in-page `fetch` / XHR not finished, including reading the response body
  (the network signal of the environment covers requests the page script cannot see).
  `animations`: running CSS transitions / animations / Web Animations that end within
  `bound_ms` (infinite ones, spinners, are ambient: counted in `ambient_animations`).
  `mutating`: a DOM node mutated within the last `mutation_quiet_ms`, not counting nodes
  that were changing on their own before the mark (several changes spread over time, or
  changes long after the previous action) or keep changing for over a second after it
  (tickers, live counters: counted in `ambient_nodes`).
  `images`: images in the viewport still loading; `fonts`: web fonts loading;
  `loading`: the document is not complete yet; `leaving`: a navigation away from the
  document (or a new tab) started and has not replaced it yet.
"""

from __future__ import annotations

from typing import Any

PAGE_SETTLE_JS = r"""
(() => {
  if (Object.prototype.hasOwnProperty.call(window, '__cuaSettle')) return;
  const BOUND_MS = %(bound_ms)d, MUTATION_QUIET_MS = %(mutation_quiet_ms)d;
  const CHAIN_MAX = 5, CHAIN_GAP_MS = 5, AMBIENT_NODE_MS = 2500, AMBIENT_SPAN_MS = 1000;
  const now = () => performance.now();
  const realSetTimeout = window.setTimeout, realClearTimeout = window.clearTimeout;
  const realClearInterval = window.clearInterval;
  let markId = 0, markAt = 0, context = null, requests = 0;
  let lastReactionMutation = -1;
  const touched = new Set();      // nodes that changed lately (pruned at each mark)
  const pending = new Map();       // timer id -> {mark, gen}
  const lastFired = new Map();     // callback key -> {mark, gen, at}
  const nodes = new WeakMap();     // node -> {last, mark, first, ambient}

  function keyOf(handler, ms) {
    let source = '';
    try { source = Function.prototype.toString.call(handler).slice(0, 120); } catch (e) {}
    return source + '|' + ms;
  }

  window.setTimeout = function (handler, delay, ...args) {
    if (typeof handler !== 'function') return realSetTimeout.call(window, handler, delay, ...args);
    const ms = Math.max(0, Number(delay) || 0);
    const key = keyOf(handler, ms);
    const info = {mark: markId, gen: 1};
    if (context) { info.mark = context.mark; info.gen = context.gen + 1; }
    else {
      const fired = lastFired.get(key);
      if (fired && now() - fired.at <= CHAIN_GAP_MS) { info.mark = fired.mark; info.gen = fired.gen + 1; }
    }
    let id;
    const run = function () {
      pending.delete(id);
      const saved = context;
      context = info;
      try { return handler.apply(this, args); }
      finally { context = saved; lastFired.set(key, {mark: info.mark, gen: info.gen, at: now()}); }
    };
    id = realSetTimeout.call(window, run, delay);
    if (ms <= BOUND_MS) pending.set(id, info);
    return id;
  };
  window.clearTimeout = function (id) { pending.delete(id); return realClearTimeout.call(window, id); };
  window.clearInterval = function (id) { pending.delete(id); return realClearInterval.call(window, id); };

  // A finished request keeps the page busy until the task after it, so that the code
  // awaiting it (then-callbacks, the body read) has run.
  const done = () => { realSetTimeout.call(window, () => { requests -= 1; }, 0); };
  const track = (promise) => { requests += 1; promise.then(done, done); return promise; };
  if (window.fetch) {
    const realFetch = window.fetch;
    window.fetch = function (...args) { return track(realFetch.apply(this, args)); };
  }
  if (window.Response) {
    for (const name of ['text', 'json', 'arrayBuffer', 'blob', 'formData']) {
      const real = Response.prototype[name];
      if (real) Response.prototype[name] = function (...args) { return track(real.apply(this, args)); };
    }
  }
  if (window.XMLHttpRequest) {
    const realSend = XMLHttpRequest.prototype.send;
    XMLHttpRequest.prototype.send = function (...args) {
      requests += 1;
      this.addEventListener('loadend', done, {once: true});
      try { return realSend.apply(this, args); } catch (e) { done(); throw e; }
    };
  }

  // A node is ambient when it was changing on its own before the mark: several changes
  // spread over time, or changes long after the action before the mark (past BOUND_MS);
  // or when it keeps changing for over AMBIENT_SPAN_MS after the mark.
  function wasAmbient(info) {  // at the mark, from the node's changes before it
    const recent = info.last < markAt && markAt - info.last < AMBIENT_NODE_MS;
    const busy = info.count >= 2 && info.last - info.first >= 30;
    const late = info.last - info.epochAt > BOUND_MS;
    return recent && (busy || late);
  }
  new MutationObserver((records) => {
    const t = now();
    for (const record of records) {
      let info = nodes.get(record.target);
      if (!info) {
        info = {epoch: -1, epochAt: 0, count: 0, first: t, last: -1e9, ambient: false};
        nodes.set(record.target, info);
      }
      if (info.epoch !== markId) {  // the first change of this node since the mark
        info.ambient = markId > 0 && wasAmbient(info);
        info.epoch = markId; info.epochAt = markAt; info.count = 0; info.first = t;
      } else if (!info.ambient && info.count >= 3 && t - info.first > AMBIENT_SPAN_MS) {
        info.ambient = true;
      }
      info.count += 1;
      info.last = t;
      touched.add(record.target);
      if (!info.ambient) lastReactionMutation = t;
    }
  }).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});

  // A navigation away from this document, or a new tab/window opening, is a reaction
  // that ends in another document: busy until it replaces this one (bounded by BOUND_MS;
  // a navigation that turns into a download or a 204 ends nothing).
  let leavingAt = -1;
  const leaving = () => { leavingAt = now(); };
  if (window.navigation) {
    navigation.addEventListener('navigate', (e) => {
      if (!e.destination.sameDocument && !e.downloadRequest) leaving();
    });
  }
  if (window.open) {
    const realOpen = window.open;
    window.open = function (...args) { leaving(); return realOpen.apply(this, args); };
  }
  window.addEventListener('click', (e) => {
    const link = e.target && e.target.closest && e.target.closest('a[target], form[target]');
    if (!e.defaultPrevented && link && !['', '_self', '_top', '_parent'].includes(link.target)) leaving();
  });

  function animations() {
    let finite = 0, infinite = 0;
    for (const animation of document.getAnimations ? document.getAnimations() : []) {
      if (animation.playState !== 'running' || !animation.effect) continue;
      const timing = animation.effect.getComputedTiming();
      const left = (timing.endTime - (timing.localTime || 0)) / Math.abs(animation.playbackRate || 1);
      if (isFinite(left) && left <= BOUND_MS) { if (left > 0) finite += 1; } else infinite += 1;
    }
    return [finite, infinite];
  }

  function loadingImages() {
    let count = 0;
    for (const image of document.images) {
      if (image.complete || !(image.currentSrc || image.src)) continue;
      const box = image.getBoundingClientRect();
      if (box.bottom >= 0 && box.right >= 0 && box.top <= innerHeight && box.left <= innerWidth) count += 1;
    }
    return count;
  }

  Object.defineProperty(window, '__cuaSettle', {enumerable: false, value: Object.freeze({
    mark() {
      markId += 1; markAt = now();
      lastReactionMutation = -1;  // what changed before the mark is not this action's
      for (const node of touched) {
        const info = nodes.get(node);
        if (!info || !node.isConnected || markAt - info.last >= AMBIENT_NODE_MS) touched.delete(node);
        else info.ambientAtMark = wasAmbient(info) ? markId : 0;
      }
      return markId;
    },
    state() {
      const t = now();
      let timers = 0;
      for (const info of pending.values()) if (info.mark === markId && info.gen <= CHAIN_MAX) timers += 1;
      const [finite, infinite] = animations();
      // Ambient nodes: judged so at their first change since the mark, or, not changed
      // since, judged so at the mark (a ticker between two ticks is still a ticker).
      let ambient = 0;
      for (const node of touched) {
        const info = nodes.get(node);
        if (info.epoch === markId ? info.ambient : info.ambientAtMark === markId) ambient += 1;
      }
      return {
        timers, requests: Math.max(0, requests), animations: finite, images: loadingImages(),
        fonts: !!(document.fonts && document.fonts.status === 'loading'),
        loading: document.readyState !== 'complete',
        leaving: leavingAt >= 0 && t - leavingAt < BOUND_MS,
        mutating: lastReactionMutation >= 0 && t - lastReactionMutation < MUTATION_QUIET_MS,
        ambient_animations: infinite, ambient_nodes: ambient, since_mark_ms: t - markAt,
      };
    },
  })});
})();
"""


def page_settle_script(bound_ms: int, mutation_quiet_ms: int) -> str:
    """The init script with its bounds filled in (milliseconds)."""
    return PAGE_SETTLE_JS % {"bound_ms": bound_ms, "mutation_quiet_ms": mutation_quiet_ms}


def busy_reasons(state: dict[str, Any]) -> list[str]:
    """What of the reaction is still pending, from a `__cuaSettle.state()` answer."""
    reasons = [name for name in ("timers", "requests", "animations", "images") if state.get(name)]
    reasons += [name for name in ("mutating", "fonts", "loading") if state.get(name)]
    if state.get("leaving"):
        reasons.append("navigation")
    return reasons


def ambient_notes(state: dict[str, Any]) -> list[str]:
    """What the page script ignored as ambient, for the observation's settle report."""
    notes = []
    if state.get("ambient_animations"):
        notes.append(f"{state['ambient_animations']} endless animation(s)")
    if state.get("ambient_nodes"):
        notes.append(f"{state['ambient_nodes']} DOM node(s) changing on their own")
    return notes

/*
 * The browser sandbox's page: polls /api/state and shows the emulated Slack for one person, and the world.
 *
 * Who you are is `?user=<name or id>` (or the picker); what you look at is the hash: `#channel/<id>`,
 * `#dm` (your DM with the app) or `#home` (its App Home: opening it sends app_home_opened, as Slack does).
 * Each part of the page is re-rendered only when its JSON changed, so typing in a modal is never disturbed.
 * People's actions POST to /api/* and go through the Slack emulator as Socket Mode envelopes to the app.
 */
(function () {
  "use strict";
  const $ = function (id) { return document.getElementById(id); };
  const BK = window.BlockKit;

  let state = null;
  let version = "";
  let person = new URLSearchParams(location.search).get("user") || "";
  let timer = null;
  let polling = false;
  const shown = {};            // part of the page -> the JSON it was last rendered from
  const expanded = new Set();  // threads opened: "channel/ts"
  const modal = { key: null, id: null, form: null, errors: {}, problem: "" };

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function changed(part, data) {
    const json = JSON.stringify(data);
    if (shown[part] === json) return false;
    shown[part] = json;
    return true;
  }

  function clock(seconds) {
    if (!seconds) return "";
    const d = new Date(seconds * 1000);
    return [d.getHours(), d.getMinutes(), d.getSeconds()].map(function (n) { return (n < 10 ? "0" : "") + n; }).join(":");
  }

  function toast(text, bad) {
    const node = el("div", "toast" + (bad ? " bad" : ""), text);
    $("toasts").appendChild(node);
    setTimeout(function () { node.remove(); }, bad ? 8000 : 4000);
  }

  async function api(path, body) {
    try {
      const response = await fetch("/api/" + path, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      const result = await response.json();
      kick();
      return result;
    } catch (error) {
      return { ok: false, error: "the sandbox did not answer: " + error };
    }
  }

  // What Slack tells a person when the app is too slow to acknowledge (see the activity log for the rest).
  function reportAck(result, lateText) {
    if (!result.ok) { toast(result.error, true); return; }
    if (result.late) toast(lateText + " (the app acknowledged after " + (result.latency_ms / 1000).toFixed(1) + " s; Slack waits 3 s)", true);
  }

  function names() {
    const users = {}, channels = {};
    if (state) {
      state.workspace.users.forEach(function (u) { users[u.id] = u.name; });
      state.workspace.channels.forEach(function (c) { channels[c.id] = c.name; });
      users[state.workspace.bot.id] = state.workspace.bot.name;
    }
    return { users: users, channels: channels };
  }

  function currentView() {
    const hash = location.hash.replace(/^#/, "");
    if (hash === "dm" || hash === "home") return hash;
    if (hash.indexOf("channel/") === 0) return hash;
    return state && state.workspace.channels.length ? "channel/" + state.workspace.channels[0].id : "dm";
  }

  // -- polling ----------------------------------------------------------------------------------
  function kick() { clearTimeout(timer); timer = setTimeout(poll, 0); }

  async function poll() {
    if (polling) return;
    polling = true;
    let delay = 300;
    try {
      const asked = person;
      const query = "/api/state?user=" + encodeURIComponent(asked) + (version ? "&since=" + version : "");
      const response = await fetch(query);
      const data = await response.json();
      $("connection").textContent = "live";
      $("connection").classList.remove("down");
      // the person was changed while this poll was out: its answer is someone else's state
      if (asked !== person) delay = 0;
      else {
        if (data.error) { toast(data.error, true); person = ""; version = ""; }
        else if (!data.unchanged) { state = data; version = data.version; person = data.user; render(); }
        else if (state) renderActivity();  // pending actions show their waiting time
        delay = state ? state.workspace.poll_ms : delay;
      }
    } catch (error) {
      $("connection").textContent = "the sandbox is not answering";
      $("connection").classList.add("down");
      delay = 1000;
    } finally {
      polling = false;
      clearTimeout(timer);
      timer = setTimeout(poll, delay);
    }
  }

  // -- rendering ----------------------------------------------------------------------------------
  function render() {
    renderPeople();
    renderSidebar();
    renderConversation();
    renderModal();
    renderActivity();
    renderWorld();
  }

  function renderPeople() {
    const select = $("person");
    if (changed("people", state.workspace.users)) {
      select.textContent = "";
      state.workspace.users.forEach(function (u) {
        const option = el("option", null, u.name);
        option.value = u.id;
        select.appendChild(option);
      });
    }
    select.value = state.user;
    const acks = state.slack.acks;
    const stats = $("ack-stats");
    stats.textContent = "acks " + acks.count + " · over 3 s: " + acks.late + " · slowest " + Math.round(acks.slowest_ms) + " ms";
    stats.classList.toggle("late", acks.late > 0);
    const app = $("app-connection");
    app.textContent = state.slack.app_connected ? "the app is connected" : "the app is not connected: actions wait for it";
    app.classList.toggle("down", !state.slack.app_connected);
  }

  function renderSidebar() {
    const view = currentView();
    if (changed("sidebar", [state.workspace.channels, view])) {
      const list = $("channel-list");
      list.textContent = "";
      state.workspace.channels.forEach(function (c) {
        const li = el("li");
        const a = el("a", null, "# " + c.name);
        a.href = "#channel/" + c.id;
        a.dataset.view = "channel/" + c.id;
        li.appendChild(a);
        list.appendChild(li);
      });
    }
    document.querySelectorAll("#sidebar a[data-view]").forEach(function (a) { a.classList.toggle("current", a.dataset.view === view); });
    $("bot-name").textContent = $("bot-name-home").textContent = state.workspace.bot.name;
    $("dm-count").textContent = state.slack.dm_counts[state.user] || "";
    if (changed("commands", state.workspace.commands)) {
      const list = $("commands");
      list.textContent = "";
      (state.workspace.commands || []).forEach(function (c) { const o = el("option"); o.value = c + " "; list.appendChild(o); });
    }
  }

  function messageNode(m, ctx) {
    const node = el("div", "message" + (m.ephemeral ? " ephemeral" : ""));
    node.dataset.ts = m.ts;
    node.dataset.channel = m.channel;
    const avatar = el("div", "avatar" + (m.user === "USLACKBOT" ? " slackbot" : ""), (m.sender || "?")[0].toUpperCase());
    node.appendChild(avatar);
    const body = el("div", "message-body");
    const meta = el("div", "message-meta");
    meta.appendChild(el("span", "sender", m.sender));
    if (m.is_app) meta.appendChild(el("span", "app-badge", "APP"));
    meta.appendChild(el("span", "time", clock(m.posted_at)));
    if (m.edits.length) {
      const edited = el("span", "edited", "(edited)");
      edited.title = "edited " + m.edits.length + "×, last at " + clock(m.edits[m.edits.length - 1]);
      meta.appendChild(edited);
    }
    if (m.ephemeral) meta.appendChild(el("span", "only-you", " · Only visible to you"));
    body.appendChild(meta);
    const content = el("div", "message-content");
    const surface = { type: "message", channel: m.channel, ts: m.ts };
    const own = Object.assign({}, ctx, { onButton: function (block, element, button) { press(surface, block, element, button); } });
    content.appendChild(m.blocks && m.blocks.length ? BK.renderBlocks(m.blocks, own) : BK.renderMrkdwn(m.text, own));
    body.appendChild(content);
    if (m.replies && m.replies.length) {
      const key = m.channel + "/" + m.ts;
      const open = expanded.has(key);
      const toggle = el("button", "thread-toggle", (open ? "Hide " : "") + m.replies.length + (m.replies.length === 1 ? " reply" : " replies"));
      toggle.type = "button";
      toggle.addEventListener("click", function () {
        if (expanded.has(key)) expanded.delete(key); else expanded.add(key);
        shown.messages = null;
        renderConversation();
      });
      body.appendChild(toggle);
      if (open) {
        const thread = el("div", "thread");
        m.replies.forEach(function (r) { thread.appendChild(messageNode(r, ctx)); });
        body.appendChild(thread);
      }
    }
    node.appendChild(body);
    return node;
  }

  function renderConversation() {
    const view = currentView();
    const ctx = names();
    const onHome = view === "home";
    $("messages").hidden = onHome;
    $("home").hidden = !onHome;
    $("composer").hidden = onHome;
    if (onHome) {
      $("conversation-title").textContent = state.workspace.bot.name + " · Home";
      if (!changed("home", [state.user, state.slack.home])) return;
      const home = $("home");
      home.textContent = "";
      if (!state.slack.home) { home.appendChild(el("div", "empty", "The app has published no Home for you yet.")); return; }
      const surface = { type: "home" };
      home.appendChild(BK.renderBlocks(state.slack.home.blocks, Object.assign({}, ctx, {
        onButton: function (block, element, button) { press(surface, block, element, button); },
      })));
      return;
    }
    let messages, title;
    if (view === "dm") { messages = state.slack.dm; title = state.workspace.bot.name + " (direct messages)"; }
    else {
      const id = view.slice("channel/".length);
      messages = state.slack.channels[id] || [];
      title = "# " + (ctx.channels[id] || id);
    }
    $("conversation-title").textContent = title;
    if (!changed("messages", [view, state.user, messages, ctx])) return;
    const box = $("messages");
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    box.textContent = "";
    if (!messages.length) box.appendChild(el("div", "empty", "No messages yet."));
    messages.forEach(function (m) { box.appendChild(messageNode(m, ctx)); });
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  async function press(surface, block, element, button) {
    if (surface.type === "modal" && modal.form) surface = Object.assign({}, surface, { values: modal.form.values() });
    button.classList.add("pending");
    button.disabled = true;
    const label = element.text && element.text.text || "";
    const result = await api("click", {
      user: state.user, label: label, block_id: block.block_id, action_id: element.action_id, surface: surface,
    });
    button.classList.remove("pending");
    button.disabled = false;
    if (result.ok && result.late) button.classList.add("warned");
    reportAck(result, "Slack shows a warning beside [" + label + "]: the app did not answer in time");
  }

  // -- the modal ----------------------------------------------------------------------------------
  function renderModal() {
    const stack = state.slack.modals;
    const layer = $("modal-layer");
    const top = stack.length ? stack[stack.length - 1] : null;
    const key = top ? state.user + "/" + top.id + "/" + top.hash : null;
    if (key === modal.key) return;
    const kept = top && modal.form && modal.id === top.id ? modal.form.values() : null;
    if (!top || top.id !== modal.id) { modal.errors = {}; modal.problem = ""; }
    modal.key = key;
    modal.id = top ? top.id : null;
    layer.textContent = "";
    if (!top) { layer.hidden = true; modal.form = null; return; }
    modal.form = new BK.Form();
    const box = el("div", "modal");
    box.setAttribute("role", "dialog");
    box.dataset.viewId = top.id;
    const header = el("div", "modal-header");
    const h = el("h3", null, top.title ? top.title.text : "");
    if (stack.length > 1) h.appendChild(el("span", "stack", stack.length + " of " + stack.length));
    header.appendChild(h);
    const x = el("button", "modal-x", "×");
    x.type = "button";
    x.title = "Close everything";
    x.addEventListener("click", function () { closeModal(true); });
    header.appendChild(x);
    box.appendChild(header);
    const body = el("div", "modal-body");
    const ctx = Object.assign({}, names(), {
      form: modal.form, errors: modal.errors,
      onButton: function (block, element, button) { press({ type: "modal" }, block, element, button); },
      suggest: function (block, element, query) {
        return api("suggest", { user: state.user, block_id: block.block_id, action_id: element.action_id, value: query })
          .then(function (r) { if (!r.ok) throw r.error; return r.options; });
      },
    });
    body.appendChild(BK.renderBlocks(top.blocks, ctx));
    box.appendChild(body);
    const problem = el("div", "modal-problem", modal.problem);
    problem.id = "modal-problem";
    box.appendChild(problem);
    const footer = el("div", "modal-footer");
    const close = el("button", "bk-button modal-close", top.close ? top.close.text : "Cancel");
    close.type = "button";
    close.addEventListener("click", function () { closeModal(false); });
    footer.appendChild(close);
    if (top.submit) {
      const submit = el("button", "bk-button bk-primary modal-submit", top.submit.text);
      submit.type = "button";
      submit.addEventListener("click", function () { submitModal(top, submit); });
      footer.appendChild(submit);
    }
    box.appendChild(footer);
    layer.appendChild(box);
    layer.hidden = false;
    if (kept) modal.form.restore(kept);
  }

  function showErrors(errors) {
    modal.errors = errors || {};
    document.querySelectorAll("#modal-layer .bk-input").forEach(function (input) {
      const slot = input.querySelector(".bk-error");
      const text = modal.errors[input.dataset.blockId] || "";
      if (slot) { slot.textContent = text; slot.hidden = !text; }
    });
  }

  async function submitModal(view, button) {
    button.disabled = true;
    const result = await api("submit", { user: state.user, view_id: view.id, values: modal.form.values() });
    button.disabled = false;
    modal.problem = result.ok ? (result.late ? "We had some trouble connecting. Try again?" : "") : result.error;
    const problem = $("modal-problem");
    if (problem) problem.textContent = modal.problem;
    if (result.ok) showErrors(result.errors);
    if (result.ok && result.late) reportAck(result, "We had some trouble connecting. Try again?");
  }

  async function closeModal(all) {
    const result = await api("close", { user: state.user, all: all });
    if (!result.ok) toast(result.error, true);
  }

  // -- activity -----------------------------------------------------------------------------------
  function renderActivity() {
    const now = Date.now() / 1000;
    const entries = state.activity.slice().reverse();
    const waiting = entries.some(function (e) { return e.status === "pending"; });
    if (!changed("activity", [entries, waiting ? Math.floor(now * 5) : 0])) return;
    const list = $("activity");
    list.textContent = "";
    entries.forEach(function (e) {
      const li = el("li", "status-" + e.status);
      li.dataset.kind = e.kind;
      li.appendChild(el("b", null, e.user + " "));
      li.appendChild(document.createTextNode(e.what + " — "));
      let outcome;
      if (e.status === "pending") {
        const waited = now - e.at;
        outcome = "waiting for the app's ack… " + waited.toFixed(1) + " s" + (waited > 3 ? " (over Slack's 3 s)" : "");
      } else if (e.status === "slack") outcome = "answered by Slack";
      else if (e.status === "failed") outcome = "failed";
      else if (e.latency_ms === null) outcome = "done";
      else outcome = (e.status === "late" ? "late ack: " : "acked in ") + Math.round(e.latency_ms) + " ms";
      li.appendChild(el("span", "outcome", outcome));
      if (e.detail) li.appendChild(el("span", "detail", e.detail));
      list.appendChild(li);
    });
  }

  // -- the outside world --------------------------------------------------------------------------
  function panel(id) { return document.querySelector("#" + id + " .body"); }
  function badge(text, kind) { return el("span", "badge " + (kind || text), text); }
  function row(cells) {
    const tr = el("tr");
    cells.forEach(function (c) { const td = el("td"); if (c instanceof Node) td.appendChild(c); else td.textContent = c === null || c === undefined ? "" : c; tr.appendChild(td); });
    return tr;
  }
  function failed(body, part) {
    if (part && part.error) { body.appendChild(el("div", "error", part.error)); return true; }
    return false;
  }
  function smallButton(text, onClick) {
    const b = el("button", "small-button", text);
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  }
  async function failNext(body) {
    const result = await api("jenkins/fail-next", body);
    toast(result.ok ? result.scripted : result.error, !result.ok);
  }

  function renderWorld() {
    const world = state.world;
    if (changed("github", world.repos.map(function (r) { return [r.repo, r.github]; }))) renderGithub(panel("w-github"), world.repos);
    if (changed("jenkins", [world.repos.map(function (r) { return [r.repo, r.jenkins]; }), world.scripted])) renderJenkins(panel("w-jenkins"), world.repos, world.scripted);
    if (changed("ecs", world.ecs)) renderEcs(panel("w-ecs"), panel("w-peas"), world.ecs);
    if (changed("alarms", world.alarms)) renderAlarms(panel("w-alarms"), world.alarms);
  }

  function commitTable(commits) {
    const table = el("table", "commits");
    commits.forEach(function (c) { table.appendChild(row([el("span", "sha", c.sha.slice(0, 10)), c.subject, c.author, clock(c.at)])); });
    return table;
  }

  // A branch folded to its name and head, opening to the commits it has that the base branch has not.
  function branchDetails(b, base, cls) {
    const details = el("details", "branch" + (cls ? " " + cls : ""));
    details.dataset.branch = b.name;
    const summary = el("summary");
    summary.appendChild(document.createTextNode(b.name + " "));
    summary.appendChild(el("span", "sha", b.sha.slice(0, 10) + " · " + b.commits.length + " ahead of " + base));
    if (b.subject) summary.appendChild(el("span", "subject", " " + b.subject));
    details.appendChild(summary);
    details.appendChild(commitTable(b.commits));
    return details;
  }

  // One box per repository (the sandbox's own first): so the repository a PR or build belongs to is never a guess.
  function repoBox(body, repo) {
    const box = el("section", "repo-world");
    box.dataset.repo = repo;
    box.appendChild(el("div", "repo", repo));
    body.appendChild(box);
    return box;
  }

  function renderGithub(body, repos) {
    body.textContent = "";
    repos.forEach(function (r) {
      const box = repoBox(body, r.repo);
      const gh = r.github;
      if (failed(box, gh)) return;
      gh.branches.forEach(function (b) {
        if (b.name === gh.base) {
          const h = el("h4", null, b.name + " (newest first) ");
          h.appendChild(el("span", "sha", "head " + b.sha.slice(0, 10)));
          box.appendChild(h);
          const history = commitTable(b.commits);
          history.dataset.branch = b.name;
          box.appendChild(history);
        }
      });
      const candidates = gh.candidates || [];
      box.appendChild(el("h4", null, "Candidate branches (a deploy's merge, built ahead)"));
      if (!candidates.length) box.appendChild(el("div", "empty", "none"));
      candidates.forEach(function (c) {
        const details = branchDetails(c, gh.base, "candidate");
        details.dataset.train = c.train;
        details.dataset.deploy = c.deploy;
        const summary = details.querySelector("summary");
        summary.appendChild(el("span", "note", " · deploy " + c.deploy + " of train " + c.train));
        (c.builds || []).forEach(function (b) {
          summary.appendChild(document.createTextNode(" · " + b.job + " #" + b.number + " "));
          summary.appendChild(b.building ? badge("building") : badge(b.result || "queued"));
        });
        box.appendChild(details);
      });
      const others = gh.branches.filter(function (b) { return b.name !== gh.base; });
      if (others.length) {
        box.appendChild(el("h4", null, "Other branches"));
        others.forEach(function (b) { box.appendChild(branchDetails(b, gh.base)); });
      }
      box.appendChild(el("h4", null, "Pull requests"));
      const table = el("table", "pulls");
      gh.pulls.forEach(function (p) {
        const tr = row(["#" + p.number, p.title, p.author, badge(p.state),
          p.state === "open" ? smallButton("fail its next build", function () { failNext({ pr: p.number, repo: r.repo }); }) : ""]);
        tr.dataset.pr = p.number;
        tr.dataset.repo = r.repo;
        table.appendChild(tr);
      });
      if (!gh.pulls.length) box.appendChild(el("div", "empty", "none"));
      box.appendChild(table);
    });
  }

  function renderJenkins(body, repos, scripted) {
    body.textContent = "";
    repos.forEach(function (r) {
      const box = repoBox(body, r.repo);
      const jobs = r.jenkins;
      if (failed(box, jobs)) return;
      jobs.forEach(function (job) {
        const h = el("h4", null, job.name + " ");
        h.appendChild(smallButton("fail next build", function () { failNext({ job: job.name }); }));
        box.appendChild(h);
        const table = el("table", "builds");
        table.dataset.job = job.name;
        job.builds.forEach(function (b) {
          const result = b.building ? badge("building") : badge(b.result || "queued");
          table.appendChild(row(["#" + b.number, result, el("span", "sha", b.sha ? b.sha.slice(0, 10) : ""),
            b.pr ? "PR #" + b.pr : "", b.cause, clock(b.at)]));
        });
        if (!job.builds.length) box.appendChild(el("div", "empty", "no builds yet"));
        box.appendChild(table);
      });
    });
    (scripted || []).forEach(function (s) { body.appendChild(el("div", "note", "set from this page at " + clock(s.at) + ": " + s.what)); });
  }

  function servicesTable(services) {
    const table = el("table", "services");
    services.forEach(function (s) {
      const name = el("span", null, s.name + " ");
      if (s.canary) name.appendChild(badge("canary"));
      if (s.status !== "ACTIVE") name.appendChild(badge(s.status));
      const deployments = el("div");
      s.deployments.forEach(function (d) {
        const line = el("div", "deployment");
        line.appendChild(badge(d.status, d.status === "PRIMARY" ? d.rollout : d.status));
        line.appendChild(document.createTextNode(" " + d.task_definition + " " + d.running + "/" + d.desired +
          (d.pending ? " (+" + d.pending + " pending)" : "") + (d.failed ? ", " + d.failed + " failed" : "") +
          (d.rollout ? " · " + d.rollout : "")));
        deployments.appendChild(line);
      });
      const tr = row([name, s.task_definition, s.images.join(", "), s.running + "/" + s.desired + (s.pending ? " +" + s.pending : ""), deployments]);
      tr.dataset.service = s.name;
      table.appendChild(tr);
      if (s.events.length) {
        const ev = el("tr");
        const td = el("td", "events", s.events[0]);
        td.colSpan = 5;
        ev.appendChild(td);
        table.appendChild(ev);
      }
    });
    return table;
  }

  function renderEcs(body, peas, ecs) {
    body.textContent = "";
    peas.textContent = "";
    if (failed(body, ecs)) return;
    let anyPeas = false;
    ecs.clusters.forEach(function (c) {
      const target = c.peas ? peas : body;
      anyPeas = anyPeas || c.peas;
      target.appendChild(el("h4", null, "cluster " + c.name));
      if (!c.services.length) target.appendChild(el("div", "empty", "no services"));
      else target.appendChild(servicesTable(c.services));
    });
    if (!anyPeas) peas.appendChild(el("div", "empty", "no pea cluster"));
  }

  function renderAlarms(body, alarms) {
    body.textContent = "";
    if (failed(body, alarms)) return;
    if (!alarms.length) { body.appendChild(el("div", "empty", "no alarms")); return; }
    const table = el("table", "alarms");
    alarms.forEach(function (a) {
      const sw = el("span", "alarm-switch");
      ["OK", "ALARM"].forEach(function (s) {
        const b = smallButton(s, async function () {
          const result = await api("alarm", { name: a.name, state: s });
          if (!result.ok) toast(result.error, true);
        });
        b.dataset.state = s;
        b.classList.toggle("on", a.state === s);
        sw.appendChild(b);
      });
      const tr = row([a.name, badge(a.state), sw, a.reason]);
      tr.dataset.alarm = a.name;
      tr.dataset.state = a.state;
      table.appendChild(tr);
    });
    body.appendChild(table);
  }

  // -- the person's actions -----------------------------------------------------------------------
  $("composer").addEventListener("submit", async function (event) {
    event.preventDefault();
    const input = $("composer-text");
    const line = input.value.trim();
    const note = $("composer-note");
    note.hidden = true;
    if (!line) return;
    if (line[0] !== "/") {
      note.textContent = "Only slash commands reach the app here (it reads no plain messages): try " +
        ((state.workspace.commands || ["/command"])[0]) + " …";
      note.hidden = false;
      return;
    }
    const space = line.search(/\s/);
    const command = space < 0 ? line : line.slice(0, space);
    const text = space < 0 ? "" : line.slice(space + 1).trim();
    const view = currentView();
    const channel = view.indexOf("channel/") === 0 ? view.slice("channel/".length) : state.slack.dm_channel;
    input.value = "";
    // who is picked now, even before the page has their state
    const result = await api("command", { user: person, command: command, text: text, channel: channel });
    reportAck(result, command + ' failed with the error "operation_timeout"');
  });

  $("person").addEventListener("change", function () {
    person = $("person").value;
    const url = new URL(location.href);
    url.searchParams.set("user", (names().users[person]) || person);
    history.replaceState(null, "", url);
    version = "";
    if (currentView() === "home") api("home", { user: person });
    kick();
  });

  window.addEventListener("hashchange", function () {
    if (currentView() === "home" && state) api("home", { user: state.user });
    if (state) render();
  });

  async function start() {
    await poll();
    if (currentView() === "home" && state) api("home", { user: state.user });
  }
  start();
})();

/*
 * The browser sandbox's Block Kit renderer: blocks, elements and mrkdwn turned into DOM, as Slack shows them.
 *
 * window.BlockKit.renderBlocks(blocks, ctx) -> HTMLElement, where ctx (all optional) is
 *   users:    {U123: "alice"}      names for <@U123> mentions and user pickers
 *   channels: {C123: "deploys"}    names for <#C123>
 *   onButton(block, element, node) called when a button is pressed (confirm dialogs are handled here)
 *   form:     a BlockKit.Form, when the blocks are a modal's: input elements register in it
 *   errors:   {block_id: "message"} shown under input blocks (a view_submission's response_action errors)
 *   suggest(block, element, query) -> Promise<[option]>   options of an external select
 * window.BlockKit.renderMrkdwn(text, ctx) and renderText(textObject, ctx) render text alone;
 * window.BlockKit.unsupportedIn(blocks) renders off-screen and lists the unsupported types found.
 *
 * Everything is built with createElement and textContent (never innerHTML), so an app's text can
 * not inject markup. A block or element type this renderer does not know shows a visible marker
 * "unsupported: <type>" (class bk-unsupported): tests walk payloads and fail on it.
 */
(function (global) {
  "use strict";

  // The emoji the product uses, and a few common ones; any other :name: is shown as typed.
  const EMOJI = {
    x: "❌", warning: "⚠️", large_green_circle: "🟢", snowflake: "❄️", white_check_mark: "✅",
    rocket: "🚀", leftwards_arrow_with_hook: "↩️", hatching_chick: "🐣", eyes: "👀", arrow_forward: "▶️",
    arrow_down: "⬇️", white_circle: "⚪", rewind: "⏪", no_entry_sign: "🚫", hourglass_flowing_sand: "⏳",
    hammer_and_wrench: "🛠️", bell: "🔔", twisted_rightwards_arrows: "🔀", seedling: "🌱",
    rotating_light: "🚨", point_right: "👉", bird: "🐦", hourglass: "⌛", tada: "🎉", wave: "👋",
    "+1": "👍", thumbsup: "👍", "-1": "👎", thumbsdown: "👎", fire: "🔥", bug: "🐛", lock: "🔒",
    unlock: "🔓", construction: "🚧", package: "📦", ship: "🚢", train: "🚆", steam_locomotive: "🚂",
    red_circle: "🔴", large_yellow_circle: "🟡", large_blue_circle: "🔵", black_circle: "⚫",
    heavy_check_mark: "✔️", heavy_minus_sign: "➖", question: "❓", exclamation: "❗",
    information_source: "ℹ️", link: "🔗", memo: "📝", stopwatch: "⏱️", arrows_counterclockwise: "🔄",
    pause_button: "⏸️", stop_sign: "🛑", checkered_flag: "🏁", traffic_light: "🚥", pea_pod: "🫛",
    clock1: "🕐", zap: "⚡", sparkles: "✨", smile: "😄", slightly_smiling_face: "🙂", pray: "🙏",
  };

  const MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December"];
  const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function unsupported(type, where) {
    const node = el("span", "bk-unsupported", "unsupported: " + (type || "(no type)"));
    node.dataset.type = type || "";
    if (where) node.title = where;
    return node;
  }

  function decodeEntities(text) {
    // Slack escapes only these three; &amp; last so that "&amp;lt;" stays "&lt;"
    return text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
  }

  function emojiNode(name) {
    const glyph = EMOJI[name];
    if (!glyph) return document.createTextNode(":" + name + ":");
    const node = el("span", "bk-emoji", glyph);
    node.title = ":" + name + ":";
    return node;
  }

  // Plain text: entities decoded, :emoji: shown when `emoji` is not false, newlines kept.
  function appendPlain(parent, text, emoji) {
    const parts = emoji === false ? [text] : text.split(/:([a-z0-9_+'-]+):/);
    parts.forEach(function (part, i) {
      if (i % 2 === 1) { parent.appendChild(emojiNode(part)); return; }
      part.split("\n").forEach(function (line, j) {
        if (j > 0) parent.appendChild(el("br"));
        if (line) parent.appendChild(document.createTextNode(line));
      });
    });
  }

  // -- dates: <!date^ts^format^link|fallback>, in the viewer's time zone ---------------------
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function ordinal(n) {
    const s = (n % 100 >= 11 && n % 100 <= 13) ? "th" : ({ 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th");
    return n + s;
  }
  function clock(d, secs) {
    const h = d.getHours() % 12 || 12;
    return h + ":" + pad(d.getMinutes()) + (secs ? ":" + pad(d.getSeconds()) : "") + " " + (d.getHours() < 12 ? "AM" : "PM");
  }
  function pretty(d, fallback) {
    const day = new Date(d.getFullYear(), d.getMonth(), d.getDate());
    const now = new Date();
    const today = new Date(now.getFullYear(), now.getMonth(), now.getDate());
    const diff = Math.round((day - today) / 86400000);
    return { 0: "today", "-1": "yesterday", 1: "tomorrow" }[diff] || fallback;
  }
  function ago(d) {
    const s = Math.round((Date.now() - d.getTime()) / 1000);
    const future = s < 0, a = Math.abs(s);
    const units = [[86400 * 365, "year"], [86400 * 30, "month"], [86400, "day"], [3600, "hour"], [60, "minute"]];
    for (const [size, name] of units) {
      if (a >= size) { const n = Math.floor(a / size); const t = n + " " + name + (n > 1 ? "s" : ""); return future ? "in " + t : t + " ago"; }
    }
    return future ? "in a few seconds" : "a few seconds ago";
  }
  function formatDate(ts, format) {
    const d = new Date(ts * 1000);
    const date = MONTHS[d.getMonth()] + " " + ordinal(d.getDate()) + ", " + d.getFullYear();
    const short = MONTHS[d.getMonth()].slice(0, 3) + " " + d.getDate() + ", " + d.getFullYear();
    const long = DAYS[d.getDay()] + ", " + date;
    const tokens = {
      date_num: d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()),
      date: date, date_short: short, date_long: long,
      date_pretty: pretty(d, date), date_short_pretty: pretty(d, short), date_long_pretty: pretty(d, long),
      time: clock(d, false), time_secs: clock(d, true), ago: ago(d),
    };
    return format.replace(/\{([a-z_]+)\}/g, function (m, name) { return name in tokens ? tokens[name] : m; });
  }

  // -- mrkdwn ---------------------------------------------------------------------------------
  const ATOM = /\u0001(\d+)\u0002/;
  const STYLES = [
    { re: /(^|[^\w*])\*(?!\s)([^*\n]*?[^\s*])\*(?![\w*])/, tag: "b" },
    { re: /(^|[^\w_])_(?!\s)([^_\n]*?[^\s_])_(?![\w_])/, tag: "i" },
    { re: /(^|[^\w~])~(?!\s)([^~\n]*?[^\s~])~(?![\w~])/, tag: "s" },
  ];

  function safeUrl(url) {
    return /^(https?:|mailto:)/i.test(url) ? url : null;
  }

  function controlNode(inner, ctx) {
    const bar = inner.indexOf("|");
    const target = bar >= 0 ? inner.slice(0, bar) : inner;
    const label = bar >= 0 ? decodeEntities(inner.slice(bar + 1)) : null;
    const users = ctx.users || {}, channels = ctx.channels || {};
    if (target[0] === "@") {
      const id = target.slice(1);
      return el("span", "bk-mention", "@" + (users[id] || label || id));
    }
    if (target[0] === "#") {
      const id = target.slice(1);
      return el("span", "bk-channel", "#" + (channels[id] || label || id));
    }
    if (target[0] === "!") {
      const parts = target.slice(1).split("^");
      if (parts[0] === "date") {
        const ts = Number(parts[1]);
        const text = isFinite(ts) ? formatDate(ts, decodeEntities(parts[2] || "{date}")) : (label || "");
        const url = parts[3] ? safeUrl(decodeEntities(parts[3])) : null;
        const node = el(url ? "a" : "span", "bk-date", text);
        if (url) { node.href = url; node.target = "_blank"; node.rel = "noopener"; }
        node.title = label || "";
        node.dataset.ts = parts[1];
        return node;
      }
      if (parts[0] === "subteam") return el("span", "bk-mention", label || "@" + parts[1]);
      if (["here", "channel", "everyone"].indexOf(parts[0]) >= 0) return el("span", "bk-broadcast", "@" + parts[0]);
      return el("span", "bk-broadcast", label || "@" + parts[0]);
    }
    const url = safeUrl(decodeEntities(target));
    const node = el(url ? "a" : "span", "bk-link", label || decodeEntities(target));
    if (url) { node.href = url; node.target = "_blank"; node.rel = "noopener"; }
    return node;
  }

  function appendLeaf(parent, text, atoms, ctx) {
    const pieces = text.split(ATOM);
    pieces.forEach(function (piece, i) {
      if (i % 2 === 1) {
        const atom = atoms[Number(piece)];
        if (atom.code !== undefined) parent.appendChild(el("code", "bk-code", decodeEntities(atom.code)));
        else parent.appendChild(controlNode(atom.ctrl, ctx));
        return;
      }
      if (!piece) return;
      const decoded = decodeEntities(piece);
      if (ctx.verbatim) { appendPlain(parent, decoded, true); return; }
      // Slack links bare URLs in mrkdwn unless the text object is verbatim
      decoded.split(/(https?:\/\/[^\s<>]+[^\s<>.,;:!?)\]'"])/).forEach(function (part, j) {
        if (j % 2 === 1) {
          const a = el("a", "bk-link", part);
          a.href = part; a.target = "_blank"; a.rel = "noopener";
          parent.appendChild(a);
        } else if (part) {
          appendPlain(parent, part, true);
        }
      });
    });
  }

  function appendStyled(parent, text, atoms, ctx) {
    let best = null;
    STYLES.forEach(function (style) {
      const m = style.re.exec(text);
      if (m && (best === null || m.index + m[1].length < best.start)) {
        best = { start: m.index + m[1].length, end: m.index + m[0].length, inner: m[2], tag: style.tag };
      }
    });
    if (best === null) { appendLeaf(parent, text, atoms, ctx); return; }
    appendLeaf(parent, text.slice(0, best.start), atoms, ctx);
    const node = el(best.tag, "bk-" + best.tag);
    appendStyled(node, best.inner, atoms, ctx);
    parent.appendChild(node);
    appendStyled(parent, text.slice(best.end), atoms, ctx);
  }

  function appendInline(parent, text, ctx) {
    const atoms = [];
    function hold(atom) { atoms.push(atom); return "\u0001" + (atoms.length - 1) + "\u0002"; }
    // code first (nothing inside it is formatted), then <...> control sequences, both atomic for styling
    let held = text.replace(/`([^`\n]+)`/g, function (m, code) { return hold({ code: code }); });
    held = held.replace(/<([^<>\n]+)>/g, function (m, inner) { return hold({ ctrl: inner }); });
    appendStyled(parent, held, atoms, ctx);
  }

  function renderMrkdwn(text, ctx) {
    ctx = ctx || {};
    const root = el("span", "bk-mrkdwn");
    const chunks = String(text || "").split(/```([\s\S]*?)```/);
    chunks.forEach(function (chunk, i) {
      if (i % 2 === 1) { root.appendChild(el("pre", "bk-pre", decodeEntities(chunk.replace(/^\n/, "")))); return; }
      // lines starting with ">" (or "&gt;") are a block quote
      const lines = chunk.split("\n");
      let quote = null, plain = [];
      function flushPlain() {
        if (!plain.length) return;
        const span = el("span");
        appendInline(span, plain.join("\n"), ctx);
        root.appendChild(span);
        plain = [];
      }
      lines.forEach(function (line) {
        const m = /^(?:>|&gt;) ?(.*)$/.exec(line);
        if (m) {
          flushPlain();
          if (!quote) { quote = el("blockquote", "bk-quote"); root.appendChild(quote); } else quote.appendChild(el("br"));
          appendInline(quote, m[1], ctx);
        } else {
          quote = null;
          plain.push(line);
        }
      });
      flushPlain();
    });
    return root;
  }

  function renderText(obj, ctx) {
    ctx = ctx || {};
    if (obj === null || obj === undefined) return el("span");
    if (typeof obj === "string") return renderMrkdwn(obj, ctx);
    if (obj.type === "mrkdwn") return renderMrkdwn(obj.text, Object.assign({}, ctx, { verbatim: !!obj.verbatim }));
    if (obj.type === "plain_text") {
      const span = el("span", "bk-plain");
      appendPlain(span, String(obj.text || ""), obj.emoji);
      return span;
    }
    return unsupported(obj.type, "text object");
  }

  function plainOf(obj) { return obj && typeof obj === "object" ? String(obj.text || "") : String(obj || ""); }

  // -- rich_text ------------------------------------------------------------------------------
  function richInline(node, ctx) {
    const style = node.style || {};
    let out;
    switch (node.type) {
      case "text": out = el("span"); appendPlain(out, String(node.text || ""), false); break;
      case "link": {
        const url = safeUrl(String(node.url || ""));
        out = el(url ? "a" : "span", "bk-link", node.text || node.url || "");
        if (url) { out.href = url; out.target = "_blank"; out.rel = "noopener"; }
        break;
      }
      case "user": out = el("span", "bk-mention", "@" + ((ctx.users || {})[node.user_id] || node.user_id)); break;
      case "usergroup": out = el("span", "bk-mention", "@" + node.usergroup_id); break;
      case "channel": out = el("span", "bk-channel", "#" + ((ctx.channels || {})[node.channel_id] || node.channel_id)); break;
      case "emoji": out = node.unicode && !EMOJI[node.name]
        ? el("span", "bk-emoji", String.fromCodePoint.apply(null, node.unicode.split("-").map(function (h) { return parseInt(h, 16); })))
        : emojiNode(node.name); break;
      case "broadcast": out = el("span", "bk-broadcast", "@" + node.range); break;
      case "date": out = el("span", "bk-date", formatDate(Number(node.timestamp), node.format || "{date}")); out.title = node.fallback || ""; break;
      case "color": out = el("span", "bk-color", node.value); out.style.borderLeft = "1em solid " + node.value; break;
      default: return unsupported(node.type, "rich_text element");
    }
    const wrappers = [["code", "code"], ["strike", "s"], ["italic", "i"], ["bold", "b"]];
    wrappers.forEach(function (pair) {
      if (style[pair[0]]) { const w = el(pair[1], "bk-" + pair[1]); w.appendChild(out); out = w; }
    });
    return out;
  }

  function richSection(node, ctx, tag) {
    const out = el(tag || "div", "bk-rich-section");
    (node.elements || []).forEach(function (child) { out.appendChild(richInline(child, ctx)); });
    return out;
  }

  function richBlock(node, ctx) {
    switch (node.type) {
      case "rich_text_section": return richSection(node, ctx);
      case "rich_text_preformatted": return richSection(node, ctx, "pre");
      case "rich_text_quote": { const q = richSection(node, ctx, "blockquote"); q.classList.add("bk-quote"); return q; }
      case "rich_text_list": {
        const list = el(node.style === "ordered" ? "ol" : "ul", "bk-rich-list");
        list.style.marginLeft = (node.indent || 0) * 1.5 + "em";
        (node.elements || []).forEach(function (item) {
          const li = el("li");
          if (item.type === "rich_text_section") li.appendChild(richSection(item, ctx, "span"));
          else li.appendChild(richBlock(item, ctx));
          list.appendChild(li);
        });
        return list;
      }
      default: return unsupported(node.type, "rich_text part");
    }
  }

  // -- elements -------------------------------------------------------------------------------
  function optionsOf(element) {
    let options = (element.options || []).slice();
    (element.option_groups || []).forEach(function (g) { options = options.concat(g.options || []); });
    return options;
  }

  function optionLabel(option, ctx) {
    const label = el("span", "bk-option-label");
    label.appendChild(renderText(option.text, ctx));
    if (option.description) { const d = el("span", "bk-option-description"); d.appendChild(renderText(option.description, ctx)); label.appendChild(d); }
    return label;
  }

  function button(element, block, ctx) {
    const node = el("button", "bk-button");
    if (element.style === "primary" || element.style === "danger") node.classList.add("bk-" + element.style);
    node.type = "button";
    node.appendChild(renderText(element.text, ctx));
    node.dataset.actionId = element.action_id || "";
    node.dataset.blockId = block.block_id || "";
    if (element.url) node.title = element.url;
    node.addEventListener("click", function () {
      const press = function () {
        if (element.url && safeUrl(element.url)) global.open(element.url, "_blank", "noopener");
        if (ctx.onButton) ctx.onButton(block, element, node);
      };
      if (element.confirm) confirmDialog(element.confirm, ctx).then(function (yes) { if (yes) press(); });
      else press();
    });
    return node;
  }

  // Slack's confirmation dialog object: title, text, confirm, deny (and its style).
  function confirmDialog(confirm, ctx) {
    return new Promise(function (resolve) {
      const layer = el("div", "bk-confirm-layer");
      const box = el("div", "bk-confirm");
      box.setAttribute("role", "dialog");
      box.appendChild(el("h3", "bk-confirm-title", plainOf(confirm.title) || "Are you sure?"));
      const body = el("div", "bk-confirm-text");
      body.appendChild(renderText(confirm.text, ctx));
      box.appendChild(body);
      const row = el("div", "bk-confirm-buttons");
      const deny = el("button", "bk-button bk-confirm-deny", plainOf(confirm.deny) || "Cancel");
      const yes = el("button", "bk-button bk-confirm-yes " + (confirm.style === "danger" ? "bk-danger" : "bk-primary"),
        plainOf(confirm.confirm) || "Yes");
      function done(value) { layer.remove(); resolve(value); }
      deny.addEventListener("click", function () { done(false); });
      yes.addEventListener("click", function () { done(true); });
      row.appendChild(deny); row.appendChild(yes); box.appendChild(row);
      layer.appendChild(box);
      document.body.appendChild(layer);
      yes.focus();
    });
  }

  // Inputs register with a Form, so that a modal's Submit (or a button in it) reads what was filled in.
  function Form() { this.fields = []; }
  Form.prototype.add = function (blockId, element, get, set) {
    this.fields.push({ blockId: blockId, actionId: element.action_id, type: element.type, get: get, set: set });
  };
  Form.prototype.values = function () {
    const values = {};
    this.fields.forEach(function (f) {
      (values[f.blockId] = values[f.blockId] || {})[f.actionId] = f.get();
    });
    return values;
  };
  Form.prototype.restore = function (values) {
    // Slack keeps what a person typed when a view is updated, for inputs with the same block and action ids
    this.fields.forEach(function (f) {
      const kept = (values[f.blockId] || {})[f.actionId];
      if (kept !== undefined && f.set) f.set(kept);
    });
  };

  function register(ctx, block, element, get, set) {
    if (ctx.form && block && block.block_id && element.action_id) ctx.form.add(block.block_id, element, get, set);
  }

  function placeholderOf(element, fallback) { return plainOf(element.placeholder) || fallback; }

  function textInput(element, block, ctx) {
    const multiline = element.type === "plain_text_input" && element.multiline;
    const node = el(multiline ? "textarea" : "input", "bk-text-input");
    if (!multiline) node.type = { number_input: "number", email_text_input: "email", url_text_input: "url" }[element.type] || "text";
    node.placeholder = placeholderOf(element, "");
    if (element.initial_value !== undefined) node.value = element.initial_value;
    if (element.max_length) node.maxLength = element.max_length;
    node.dataset.actionId = element.action_id || "";
    register(ctx, block, element, function () { return node.value === "" ? null : node.value; },
      function (v) { node.value = v === null ? "" : v; });
    return node;
  }

  function choiceList(element, block, ctx) {
    const multi = element.type === "checkboxes";
    const box = el("div", "bk-choices bk-" + element.type);
    const name = "r" + Math.random().toString(36).slice(2);
    const initial = multi ? (element.initial_options || []).map(function (o) { return o.value; })
      : element.initial_option ? [element.initial_option.value] : [];
    const inputs = [];
    optionsOf(element).forEach(function (option) {
      const label = el("label", "bk-choice");
      const input = el("input");
      input.type = multi ? "checkbox" : "radio";
      input.name = name;
      input.value = option.value;
      input.checked = initial.indexOf(option.value) >= 0;
      inputs.push(input);
      label.appendChild(input);
      label.appendChild(optionLabel(option, ctx));
      box.appendChild(label);
    });
    register(ctx, block, element, function () {
      const picked = inputs.filter(function (i) { return i.checked; }).map(function (i) { return i.value; });
      return multi ? picked : (picked[0] || null);
    }, function (v) {
      const want = multi ? v : [v];
      inputs.forEach(function (i) { i.checked = want.indexOf(i.value) >= 0; });
    });
    return box;
  }

  function staticSelect(element, block, ctx, options) {
    const multi = element.type.indexOf("multi_") === 0;
    const node = el("select", "bk-select bk-" + element.type);
    node.multiple = multi;
    node.dataset.actionId = element.action_id || "";
    if (!multi) {
      const none = el("option", null, placeholderOf(element, "Select an item"));
      none.value = "";
      node.appendChild(none);
    }
    const initial = [];
    if (element.initial_option) initial.push(element.initial_option.value);
    (element.initial_options || []).forEach(function (o) { initial.push(o.value); });
    ["initial_user", "initial_conversation", "initial_channel"].forEach(function (k) { if (element[k]) initial.push(element[k]); });
    ["initial_users", "initial_conversations", "initial_channels"].forEach(function (k) { (element[k] || []).forEach(function (v) { initial.push(v); }); });
    function add(parent, option) {
      const o = el("option", null, plainOf(option.text));
      o.value = option.value;
      o.selected = initial.indexOf(option.value) >= 0;
      parent.appendChild(o);
    }
    if (element.option_groups) {
      element.option_groups.forEach(function (g) {
        const group = el("optgroup");
        group.label = plainOf(g.label);
        (g.options || []).forEach(function (o) { add(group, o); });
        node.appendChild(group);
      });
    }
    (options || element.options || []).forEach(function (o) { add(node, o); });
    register(ctx, block, element, function () {
      const picked = Array.prototype.filter.call(node.options, function (o) { return o.selected && o.value !== ""; })
        .map(function (o) { return o.value; });
      return multi ? picked : (picked[0] || null);
    }, function (v) {
      const want = multi ? v : [v];
      Array.prototype.forEach.call(node.options, function (o) { o.selected = want.indexOf(o.value) >= 0; });
    });
    return node;
  }

  // An external select: what is typed goes to the app (block_suggestion), whose options are offered.
  function externalSelect(element, block, ctx) {
    const multi = element.type === "multi_external_select";
    const box = el("div", "bk-external");
    box.dataset.actionId = element.action_id || "";
    const chosen = el("div", "bk-external-chosen");
    const input = el("input", "bk-external-input");
    input.type = "text";
    input.placeholder = placeholderOf(element, "Type to search");
    const list = el("ul", "bk-external-options");
    list.hidden = true;
    let picked = multi ? (element.initial_options || []).slice() : (element.initial_option ? [element.initial_option] : []);
    let asked = 0;
    function showChosen() {
      chosen.textContent = "";
      picked.forEach(function (option, i) {
        const chip = el("span", "bk-chip");
        chip.appendChild(renderText(option.text, ctx));
        const x = el("button", "bk-chip-remove", "×");
        x.type = "button";
        x.addEventListener("click", function () { picked.splice(i, 1); showChosen(); });
        chip.appendChild(x);
        chosen.appendChild(chip);
      });
    }
    function ask() {
      const query = input.value;
      if (query.length < (element.min_query_length === undefined ? 3 : element.min_query_length)) { list.hidden = true; return; }
      const mine = ++asked;
      list.hidden = false;
      list.textContent = "";
      list.appendChild(el("li", "bk-external-loading", "Loading…"));
      Promise.resolve(ctx.suggest ? ctx.suggest(block, element, query) : []).then(function (options) {
        if (mine !== asked) return;  // a later keystroke's answer wins
        list.textContent = "";
        if (!options.length) list.appendChild(el("li", "bk-external-empty", "No results"));
        options.forEach(function (option) {
          const li = el("li", "bk-external-option");
          li.dataset.value = option.value;
          li.appendChild(optionLabel(option, ctx));
          li.addEventListener("mousedown", function (event) {
            event.preventDefault();
            picked = multi ? picked.concat([option]) : [option];
            input.value = "";
            list.hidden = true;
            showChosen();
          });
          list.appendChild(li);
        });
      }, function (error) {
        if (mine !== asked) return;
        list.textContent = "";
        list.appendChild(el("li", "bk-external-empty", "The app did not answer: " + error));
      });
    }
    let timer = null;
    input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(ask, 150); });
    input.addEventListener("focus", ask);
    input.addEventListener("blur", function () { setTimeout(function () { list.hidden = true; }, 150); });
    box.appendChild(chosen); box.appendChild(input); box.appendChild(list);
    showChosen();
    register(ctx, block, element, function () { return multi ? picked.slice() : (picked[0] || null); },
      function (v) { picked = v === null ? [] : (multi ? v.slice() : [v]); showChosen(); });
    return box;
  }

  function picker(element, block, ctx) {
    const people = element.type.indexOf("users") >= 0;
    const source = people ? ctx.users || {} : ctx.channels || {};
    const options = Object.keys(source).map(function (id) {
      return { text: { type: "plain_text", text: (people ? "" : "#") + source[id] }, value: id };
    });
    return staticSelect(element, block, ctx, options);
  }

  function dateInput(element, block, ctx) {
    const node = el("input", "bk-" + element.type);
    node.type = { datepicker: "date", timepicker: "time", datetimepicker: "datetime-local" }[element.type];
    const initial = element.initial_date || element.initial_time;
    if (initial) node.value = initial;
    if (element.initial_date_time) {
      const d = new Date(element.initial_date_time * 1000);
      node.value = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) + ":" + pad(d.getMinutes());
    }
    register(ctx, block, element, function () {
      if (!node.value) return null;
      return element.type === "datetimepicker" ? Math.round(new Date(node.value).getTime() / 1000) : node.value;
    }, function (v) { node.value = v || ""; });
    return node;
  }

  function overflow(element, block, ctx) {
    // Slack shows "⋯" and a menu; choosing from it is not sent by this sandbox, so it only lists the options
    const node = el("details", "bk-overflow");
    node.appendChild(el("summary", null, "⋯"));
    const menu = el("ul");
    optionsOf(element).forEach(function (o) { const li = el("li"); li.appendChild(renderText(o.text, ctx)); menu.appendChild(li); });
    node.appendChild(menu);
    return node;
  }

  function renderElement(element, block, ctx) {
    if (!element || typeof element !== "object") return unsupported(String(element), "element");
    switch (element.type) {
      case "button": return button(element, block, ctx);
      case "image": {
        const img = el("img", "bk-element-image");
        img.alt = element.alt_text || "";
        img.title = element.alt_text || "";
        if (safeUrl(element.image_url || "") || /^data:image\//.test(element.image_url || "")) img.src = element.image_url;
        return img;
      }
      case "mrkdwn": case "plain_text": return renderText(element, ctx);
      case "plain_text_input": case "number_input": case "email_text_input": case "url_text_input":
        return textInput(element, block, ctx);
      case "checkboxes": case "radio_buttons": return choiceList(element, block, ctx);
      case "static_select": case "multi_static_select": return staticSelect(element, block, ctx);
      case "external_select": case "multi_external_select": return externalSelect(element, block, ctx);
      case "users_select": case "multi_users_select": case "conversations_select": case "multi_conversations_select":
      case "channels_select": case "multi_channels_select": return picker(element, block, ctx);
      case "datepicker": case "timepicker": case "datetimepicker": return dateInput(element, block, ctx);
      case "overflow": return overflow(element, block, ctx);
      default: return unsupported(element.type, "element");
    }
  }

  // -- blocks ---------------------------------------------------------------------------------
  function renderBlock(block, ctx) {
    if (!block || typeof block !== "object") return unsupported(String(block), "block");
    let node;
    switch (block.type) {
      case "section": {
        node = el("div", "bk-section");
        const main = el("div", "bk-section-main");
        if (block.text) main.appendChild(renderText(block.text, ctx));
        if (block.fields && block.fields.length) {
          const fields = el("div", "bk-fields");
          block.fields.forEach(function (f) { const cell = el("div", "bk-field"); cell.appendChild(renderText(f, ctx)); fields.appendChild(cell); });
          main.appendChild(fields);
        }
        node.appendChild(main);
        if (block.accessory) { const acc = el("div", "bk-accessory"); acc.appendChild(renderElement(block.accessory, block, ctx)); node.appendChild(acc); }
        break;
      }
      case "context":
        node = el("div", "bk-context");
        (block.elements || []).forEach(function (e) {
          const part = e.type === "image" ? renderElement(e, block, ctx) : e.type === "mrkdwn" || e.type === "plain_text"
            ? renderText(e, ctx) : unsupported(e.type, "context element");
          node.appendChild(part);
        });
        break;
      case "divider": node = el("hr", "bk-divider"); break;
      case "header": node = el("div", "bk-header"); node.appendChild(renderText(block.text, ctx)); break;
      case "actions":
        node = el("div", "bk-actions");
        (block.elements || []).forEach(function (e) { node.appendChild(renderElement(e, block, ctx)); });
        break;
      case "image": {
        node = el("figure", "bk-image");
        if (block.title) { const cap = el("figcaption"); cap.appendChild(renderText(block.title, ctx)); node.appendChild(cap); }
        const img = el("img");
        img.alt = block.alt_text || "";
        img.title = block.alt_text || "";
        const url = block.image_url || "";
        if (safeUrl(url) || /^data:image\//.test(url)) img.src = url;
        img.addEventListener("error", function () { img.replaceWith(el("span", "bk-image-missing", "[image: " + (block.alt_text || "") + "]")); });
        node.appendChild(img);
        break;
      }
      case "rich_text":
        node = el("div", "bk-rich");
        (block.elements || []).forEach(function (part) { node.appendChild(richBlock(part, ctx)); });
        break;
      case "video": {
        node = el("div", "bk-video");
        const url = safeUrl(block.title_url || block.video_url || "");
        const title = el(url ? "a" : "span", "bk-video-title", plainOf(block.title) || block.alt_text || "video");
        if (url) { title.href = url; title.target = "_blank"; title.rel = "noopener"; }
        node.appendChild(el("span", "bk-emoji", "▶️"));
        node.appendChild(title);
        if (block.description) node.appendChild(renderText(block.description, ctx));
        break;
      }
      case "input": {
        node = el("div", "bk-input");
        const label = el("label", "bk-input-label");
        label.appendChild(renderText(block.label, ctx));
        if (block.optional) label.appendChild(el("span", "bk-optional", " (optional)"));
        node.appendChild(label);
        node.appendChild(renderElement(block.element, block, ctx));
        if (block.hint) { const hint = el("div", "bk-hint"); hint.appendChild(renderText(block.hint, ctx)); node.appendChild(hint); }
        const error = (ctx.errors || {})[block.block_id];
        const slot = el("div", "bk-error", error || "");
        slot.hidden = !error;
        node.appendChild(slot);
        break;
      }
      default: return unsupported(block.type, "block");
    }
    if (block.block_id) node.dataset.blockId = block.block_id;
    return node;
  }

  function renderBlocks(blocks, ctx) {
    ctx = ctx || {};
    const root = el("div", "bk-blocks");
    (blocks || []).forEach(function (block) { root.appendChild(renderBlock(block, ctx)); });
    return root;
  }

  function unsupportedIn(blocks, ctx) {
    const node = renderBlocks(blocks, ctx || {});
    return Array.prototype.map.call(node.querySelectorAll(".bk-unsupported"), function (n) { return n.dataset.type; });
  }

  global.BlockKit = {
    renderBlocks: renderBlocks, renderBlock: renderBlock, renderElement: renderElement, renderText: renderText,
    renderMrkdwn: renderMrkdwn, formatDate: formatDate, unsupportedIn: unsupportedIn, Form: Form, EMOJI: EMOJI,
  };
})(window);

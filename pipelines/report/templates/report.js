"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const NS = "http://www.w3.org/2000/svg";
function el(tag, cls, text) {
  const e = document.createElement(tag); if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text; return e;
}
function show(i) {
  const it = D.items[i]; const box = document.getElementById("detail"); box.replaceChildren();
  if (it.thumb) { const im = el("img"); im.src = it.thumb; im.alt = it.id; box.appendChild(im); }
  if (it.text !== undefined) box.appendChild(el("p", "", it.text));
  const rows = [["id", it.id], ["label", it.label || "(none)"]];
  if (it.path) rows.push(["file", it.path]);
  if (it.mark) rows.push(["why marked", it.mark]);
  for (const [k, v] of rows) { const p = el("div", "kv"); p.append(el("b", "", k + ":"), " ", el("bdi", "", v)); box.appendChild(p); }
  document.querySelectorAll("#map circle.sel").forEach(c => c.classList.remove("sel"));
  const dot = document.querySelector('#map circle[data-i="' + i + '"]'); if (dot) dot.classList.add("sel");
}
const svg = document.getElementById("map");
for (const [i, x, y] of D.points) {
  const it = D.items[i]; const c = document.createElementNS(NS, "circle");
  c.setAttribute("cx", (10 + x * 620).toFixed(1)); c.setAttribute("cy", (470 - y * 460).toFixed(1));
  c.setAttribute("r", it.mark ? 5 : 3.5); c.setAttribute("fill", it.colour); c.setAttribute("fill-opacity", "0.8");
  c.setAttribute("class", "pt" + (it.mark ? " marked" : "")); c.dataset.i = i;
  const t = document.createElementNS(NS, "title"); t.textContent = it.id + " (" + (it.label || "no label") + ")";
  c.appendChild(t); c.addEventListener("click", () => show(i)); svg.appendChild(c);
}
const legend = document.getElementById("legend");
for (const [label, colour] of D.legend) {
  const s = el("span"); const dot = el("i"); dot.style.background = colour;
  s.append(dot, label || "(no label)"); legend.appendChild(s);
}
function card(i, caption) {
  const it = D.items[i]; const d = el("div", "item"); d.dataset.i = i;
  if (it.thumb) { const im = el("img"); im.src = it.thumb; im.alt = it.id; d.appendChild(im); }
  else if (it.text !== undefined) d.appendChild(el("div", "text", it.text));
  else d.appendChild(el("div", "", "(unreadable)"));
  d.appendChild(el("div", "cap", caption));
  d.addEventListener("click", () => show(i)); return d;
}
const root = document.getElementById("galleries");
for (const g of D.galleries) {
  const sec = el("section", "gallery"); const h = el("h2"); h.append(el("bdi", "", g.title), " (" + g.total + ")");
  sec.appendChild(h);
  if (g.note) sec.appendChild(el("p", "note", g.note));
  const grid = el("div", "grid"); const pager = el("div", "pager");
  sec.append(pager, grid); root.appendChild(sec);
  const pages = Math.max(1, Math.ceil(g.cards.length / D.page)); let at = 0;
  const prev = el("button", "", "previous"); const next = el("button", "", "next"); const where = el("span");
  function draw() { grid.replaceChildren(...g.cards.slice(at * D.page, (at + 1) * D.page).map(([i, c]) => card(i, c)));
    where.textContent = "page " + (at + 1) + " of " + pages + (g.total > g.cards.length ? " (first " + g.cards.length + " shown; all in the CSV)" : "");
    prev.disabled = at === 0; next.disabled = at >= pages - 1; }
  prev.addEventListener("click", () => { at -= 1; draw(); }); next.addEventListener("click", () => { at += 1; draw(); });
  if (!g.cards.length) sec.appendChild(el("p", "note", "Nothing found."));
  else { if (pages > 1) pager.append(prev, next); pager.appendChild(where); draw(); }
}

// PurgeCSS at the copy step (Makefile, static/vendor/.copied): Designsystemet's CSS trimmed
// to the rules whose classes, ids and elements the portal's markup can contain. What it can
// contain is read from the templates, the portal's scripts and the Python that writes
// markup; what a browser, htmx or a Django widget adds at run time is kept below.
const fs = require("node:fs");

const DESIGNSYSTEMET_CSS = "node_modules/@digdir/designsystemet-css/dist/src/index.css";

const HTML_ELEMENTS = [
  "a abbr address article aside audio b bdi bdo blockquote body br button canvas caption cite",
  "code col colgroup data datalist dd del details dfn dialog div dl dt em embed fieldset",
  "figcaption figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr html i iframe img input",
  "ins kbd label legend li main mark menu meter nav object ol optgroup option output p picture",
  "pre progress q rp rt ruby s samp search section select slot small source span strong sub",
  "summary sup svg table tbody td template textarea tfoot th thead time tr track u ul var",
  "video wbr",
].flatMap((line) => line.split(" "));

module.exports = {
  content: [
    "templates/**/*.html",
    "static/js/**/*.js",
    "pjd_portal/**/*.py",
    "pjd_portal/**/*.xsl", // the XML documents' views, made by our XSLT
    // Every HTML element: a rule is never dropped for the element it names (Django's form
    // widgets, a sanitised document view and the browser's own markup may hold any), only
    // for a class or id the markup cannot contain.
    {
      raw: HTML_ELEMENTS.join(" "),
      extension: "html",
    },
  ],
  // No rule is dropped for an attribute it asks about: the browser, htmx or a script sets
  // attributes at run time (aria-busy while htmx waits, open on a dialog, aria-invalid on a
  // refused field), Django's widgets write their own (type, required, size), and
  // Designsystemet's data attributes (data-color, data-size, data-variant …) pick a
  // component's variant where a template may state it through a variable the scan cannot
  // read. It also keeps PurgeCSS from emptying a :where() inside a :not() — it then drops
  // the whole rule (.ds-input:not([size],[cols],select:where([data-width=auto])) is the
  // input's width). So every attribute name in the CSS is one whose rules stay; only
  // classes, ids and elements the markup cannot contain are trimmed.
  dynamicAttributes: [
    ...new Set(
      Array.from(
        fs.readFileSync(DESIGNSYSTEMET_CSS, "utf8").matchAll(/\[([a-zA-Z_-][\w-]*)/g),
        (match) => match[1],
      ),
    ),
  ],
  safelist: {
    // A pseudo-class is never a reason to drop a selector: PurgeCSS finds no :hover in the
    // markup and drops it from :where(:hover, …), and an emptied :where() takes its whole
    // rule with it (a checked radio's hover colour went so).
    standard: [/^:/],
    // htmx's own classes on elements it is swapping or waiting for.
    greedy: [/^htmx-/],
  },
  // Custom properties, keyframes and font faces stay: a var() may name any of them.
  variables: false,
  keyframes: false,
  fontFace: false,
};

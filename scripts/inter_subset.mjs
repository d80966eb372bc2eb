// Inter for the portal, made at the copy step (Makefile, static/vendor/.copied): the Latin
// subset of Inter's variable font (@fontsource-variable/inter) with its weight axis cut
// to 400–700, the weights the CSS resolves to (Designsystemet's regular, medium and
// semibold, and the browser's bold for <strong>). The outlines between 400 and 700 are the
// same; the masters beyond them are gone: 30 KB instead of 48 KB. The characters are
// Fontsource's Latin range, so what the font covered before it still covers, and every
// OpenType feature stays.
//
//   node scripts/inter_subset.mjs OUTPUT.woff2
import fs from "node:fs";
import subsetFont from "subset-font";

const SOURCE = "node_modules/@fontsource-variable/inter/files/inter-latin-wght-normal.woff2";
// Fontsource's unicode-range for the Latin file (its wght.css), printable characters only.
const LATIN = [
  [0x20, 0x7e], [0xa0, 0xff], [0x131], [0x152, 0x153], [0x2bb, 0x2bc], [0x2c6], [0x2da],
  [0x2dc], [0x304], [0x308], [0x329], [0x2000, 0x206f], [0x20ac], [0x2122], [0x2191],
  [0x2193], [0x2212], [0x2215], [0xfeff], [0xfffd],
];

const output = process.argv[2];
if (!output) {
  console.error("usage: node scripts/inter_subset.mjs OUTPUT.woff2");
  process.exit(2);
}
let text = "";
for (const [first, last = first] of LATIN) {
  for (let code = first; code <= last; code++) text += String.fromCodePoint(code);
}
const font = await subsetFont(fs.readFileSync(SOURCE), text, {
  targetFormat: "woff2",
  variationAxes: { wght: { min: 400, max: 700 } },
});
fs.writeFileSync(output, font);
console.log(`${output}: ${font.length} bytes`);

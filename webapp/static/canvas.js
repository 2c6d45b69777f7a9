// The drawing canvas (gr.HTML's js_on_load: `element`, `props` and `trigger` are in scope).
// A plain 2-D canvas whose value is its PNG data URL, sent when a stroke ends: the picture is
// ready the moment the finger lifts, with no image editor to export layers and upload them first.
const canvas = element.querySelector('canvas');
const pen = canvas.getContext('2d');
const BRUSH = canvas.width * 22 / 320;   // the stroke MNIST-like digits get at this size
const strokes = [];
let current = null;

const paint = () => {
  pen.fillStyle = '#ffffff';
  pen.fillRect(0, 0, canvas.width, canvas.height);
  pen.strokeStyle = '#000000';
  pen.lineWidth = BRUSH;
  pen.lineCap = 'round';
  pen.lineJoin = 'round';
  for (const s of strokes) {
    pen.beginPath();
    pen.moveTo(s[0][0], s[0][1]);
    for (const [x, y] of s) pen.lineTo(x, y);
    if (s.length === 1) pen.lineTo(s[0][0] + 0.1, s[0][1]);   // a tap leaves a dot
    pen.stroke();
  }
};
// pointer position in the canvas's own pixels, whatever size CSS gives it on screen
const at = e => {
  const r = canvas.getBoundingClientRect();
  return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
};
// a new value fires the component's change event by itself (a trigger('change') here sent it twice)
const send = () => {
  props.value = strokes.length ? canvas.toDataURL('image/png') : '';
};
const end = () => {
  if (!current) return;
  current = null;
  send();
};

paint();
canvas.addEventListener('pointerdown', e => {
  if (e.button > 0) return;
  e.preventDefault();
  canvas.setPointerCapture(e.pointerId);
  current = [at(e)];
  strokes.push(current);
  paint();
});
canvas.addEventListener('pointermove', e => {
  if (!current) return;
  for (const c of (e.getCoalescedEvents ? e.getCoalescedEvents() : [e])) current.push(at(c));
  paint();
});
canvas.addEventListener('pointerup', end);
canvas.addEventListener('pointercancel', end);
element.querySelector('[data-action=undo]').addEventListener('click', () => {
  if (!strokes.length) return;
  strokes.pop();
  paint();
  send();
});
element.querySelector('[data-action=clear]').addEventListener('click', () => {
  strokes.length = 0;
  paint();
  send();
});

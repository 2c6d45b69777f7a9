() => {
  // Gradio 6's editor waits for its "Brush" tool to be picked, and drops the tool again on "Clear
  // canvas". Keep a tool picked: whenever none of Brush/Erase/Pan is active, pick Brush, so the first
  // stroke always draws.
  const name = b => (b.getAttribute('aria-label') || b.title || '').trim();
  const active = b => b.classList.contains('highlight') || b.classList.contains('selected')
                      || b.getAttribute('aria-pressed') === 'true';
  const keepBrush = () => {
    const root = document.querySelector('#sketch');
    if (!root || !root.offsetParent) return;           // not rendered or tab hidden
    const buttons = [...root.querySelectorAll('button')];
    if (buttons.some(b => ['Brush', 'Erase', 'Pan'].includes(name(b)) && active(b))) return;
    const brush = buttons.find(b => name(b) === 'Brush');
    if (brush) brush.click();
  };
  setInterval(keepBrush, 250);
}

() => {
  // Gradio 6 leaves controls a screen reader cannot name: output pictures, the examples (a
  // button round an image with alt=""), and gallery thumbnails, all called "Thumbnail 1 of 4"
  // while their picture's alt text holds the caption. Name each from what it shows, again after
  // the page changes (once per frame at most).
  const fileName = src => decodeURIComponent((src || '').split('/').pop().split('?')[0]);
  const nameAll = () => {
    document.querySelectorAll('button.gallery-item:not([aria-label])').forEach(b => {
      const img = b.querySelector('img');
      if (img) b.setAttribute('aria-label', 'Example image ' + fileName(img.getAttribute('src')));
    });
    // an output picture is a button (click to enlarge) named by nothing: use its block's label
    document.querySelectorAll('button:not([aria-label]) > .image-frame > img').forEach(img => {
      const block = img.closest('.block');
      const label = block && (block.querySelector('[data-testid=block-label]')?.innerText || block.getAttribute('aria-label'));
      img.closest('button').setAttribute('aria-label', 'Enlarge ' + (label || img.alt || fileName(img.getAttribute('src'))));
    });
    document.querySelectorAll('button.thumbnail-item').forEach(b => {
      const img = b.querySelector('img');
      const said = b.getAttribute('aria-label') || '';
      if (img && img.alt && !said.includes(img.alt)) b.setAttribute('aria-label', `${said.replace('Thumbnail ', '')}: ${img.alt}`);
    });
  };
  let queued = false;
  new MutationObserver(() => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; nameAll(); });
  }).observe(document.body, {childList: true, subtree: true, attributes: true, attributeFilter: ['src', 'alt']});
  nameAll();
}

() => {
  // Plotly's 3D camera takes every wheel event over its scene (it cancels the page's scroll even
  // with scroll zoom off), so a page scrolled with the mouse stops dead over the t-SNE. Stopping the
  // event on its way down, before it reaches the scene, leaves the wheel to the page.
  document.addEventListener('wheel', e => {
    if (e.target.closest && e.target.closest('#analyze-tsne3d')) e.stopPropagation();
  }, {capture: true});
}

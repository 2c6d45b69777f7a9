() => {
  // The training log follows its last line. Gradio 6's Textbox autoscroll leaves a streamed value
  // at its first lines: setting a textarea's value fires no event to hook, so look twice a second.
  let seen = '';
  setInterval(() => {
    const log = document.querySelector('#train-log textarea');
    if (log && log.value !== seen) {
      seen = log.value;
      log.scrollTop = log.scrollHeight;
    }
  }, 500);
}

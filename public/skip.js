// "Skip to content" for keyboard users (a button: the URL fragment is the router's).
const skip = document.getElementById('skip');
skip?.addEventListener('click', () => {
  const main = document.getElementById('main');
  const h1 = main?.querySelector('h1');
  (h1 ?? main)?.focus();
});

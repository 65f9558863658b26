"""The benchmark site of bench/proxy.sh and bench/proxy-scale.sh, the same
bytes every run: a 5 KB page, a 200 KB asset and a ~50 KB documentation
page as compressible as real HTML.

Usage: python3 bench/site.py DIR
"""
import os, random, sys
root = sys.argv[1]
os.makedirs(os.path.join(root, 'assets'), exist_ok=True)
random.seed(7)
words = [''.join(random.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(random.randint(2, 9))) for _ in range(2000)]
def text(size):
    out, length = [], 0
    while length < size:
        out.append(random.choice(words))
        length += len(out[-1]) + 1
    return ' '.join(out)[:size]
open(os.path.join(root, 'page.html'), 'w').write(text(5 * 1024))
open(os.path.join(root, 'assets', 'app.3f9a1c2e.js'), 'w').write(text(200 * 1024))
# A documentation page: markup repeated around prose, as compressible as
# real HTML (gzip takes it to about a third).
parts = ['<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Bench docs</title>\n'
         '<link rel="stylesheet" href="/assets/site.css">\n</head>\n<body>\n<nav class="sidebar"><ul>\n']
parts += [f'<li class="nav-item"><a class="nav-link" href="/docs/{w}.html">{w}</a></li>\n' for w in words[:60]]
parts.append('</ul></nav>\n<main class="content">\n')
section = 0
while sum(map(len, parts)) < 50 * 1024:
    section += 1
    parts.append(f'<section id="s{section}">\n<h2 class="section-title"><a href="#s{section}">{text(40)}</a></h2>\n'
                 f'<p class="prose">{text(600)}</p>\n<pre class="code"><code class="language-toml">[site]\nname = "{random.choice(words)}"\n</code></pre>\n</section>\n')
parts.append('</main>\n</body>\n</html>\n')
open(os.path.join(root, 'docs.html'), 'w').write(''.join(parts))

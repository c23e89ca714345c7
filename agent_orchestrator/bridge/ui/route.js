// The URL hash: which view, and its filters (so a filtered view can be bookmarked and shared).

/** The current hash as {path, query}. */
export function currentRoute() {
  const hash = window.location.hash.replace(/^#/, "") || "/agents";
  const [path, search = ""] = hash.split("?");
  return { path, query: new URLSearchParams(search) };
}

/** Put a view's filters in the URL without reloading the view. */
export function saveQuery(values) {
  const { path } = currentRoute();
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(values)) if (value) query.set(key, value);
  const search = query.toString();
  history.replaceState(null, "", `#${path}${search ? `?${search}` : ""}`);
}

// Stylesheets are bundled by Vite; to TypeScript a CSS import is a module with no exports.
declare module "*.css";
